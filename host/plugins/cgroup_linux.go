package plugins

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// pluginCgroupName is the cgroup, next to the host's own, that holds the
// plugin processes. Service managers stop a service by killing its cgroup:
// keeping plugins out of it means stopping or restarting the host (for
// example `systemctl restart berth`) does not take monitors and plugins
// down with it; the host stops them itself on a clean shutdown.
const pluginCgroupName = "berth-plugins"

// moveToPluginCgroup moves pid into the plugin cgroup in the hierarchies a
// service manager tracks processes by: the unified (v2) hierarchy and, on
// v1 or hybrid hosts, the name=systemd one. Resource controllers (memory,
// cpu, ...) are left alone.
func moveToPluginCgroup(pid int) error {
	self, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return err
	}
	defer self.Close()
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	var errs []string
	sc := bufio.NewScanner(self)
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var root string
		switch {
		case parts[0] == "0" && parts[1] == "":
			root = mounts["cgroup2"]
		case parts[1] == "name=systemd":
			root = mounts["name=systemd"]
		default:
			continue
		}
		if root == "" {
			continue
		}
		parent := filepath.Dir(parts[2])
		if parts[2] == "/" {
			parent = "/"
		}
		dir := filepath.Join(root, parent, pluginCgroupName)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			errs = append(errs, fmt.Sprintf("move pid %d to %s: %v", pid, dir, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return sc.Err()
}

// cgroupMounts finds the mount points of the unified hierarchy ("cgroup2")
// and of the v1 name=systemd hierarchy.
func cgroupMounts() (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mountpoint ... - fstype source superopts
		line := sc.Text()
		sep := strings.Index(line, " - ")
		if sep < 0 {
			continue
		}
		pre, post := strings.Fields(line[:sep]), strings.Fields(line[sep+3:])
		if len(pre) < 5 || len(post) < 3 {
			continue
		}
		switch post[0] {
		case "cgroup2":
			if _, ok := out["cgroup2"]; !ok {
				out["cgroup2"] = pre[4]
			}
		case "cgroup":
			if strings.Contains(post[2], "name=systemd") {
				out["name=systemd"] = pre[4]
			}
		}
	}
	return out, sc.Err()
}
