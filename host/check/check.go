// Package check inspects the node for what Berth and its default plugins
// need, for `berth check`: each finding is OK or FAIL with the fix.
package check

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/host/config"
)

// Result is one line of `berth check`.
type Result struct {
	OK bool
	// Warn marks a failed check that does not stop the node from running
	// pods (a runtime class other than the default one, for example).
	Warn   bool
	Name   string
	Detail string
	Fix    string // empty when OK
}

func (r Result) String() string {
	switch {
	case r.OK:
		return fmt.Sprintf("OK    %-28s %s", r.Name, r.Detail)
	case r.Warn:
		return fmt.Sprintf("WARN  %-28s %s\n      fix: %s", r.Name, r.Detail, r.Fix)
	}
	return fmt.Sprintf("FAIL  %-28s %s\n      fix: %s", r.Name, r.Detail, r.Fix)
}

// Run performs every check against cfg.
func Run(cfg *config.Config) []Result {
	var out []Result
	out = append(out, checkRoot())
	for _, name := range cfg.PluginNames() {
		out = append(out, checkPlugin(cfg, cfg.Plugins[name]))
	}
	for _, h := range sortedHandlers(cfg) {
		r := checkRuntimeClass(h, cfg.RuntimeClasses[h])
		if !r.OK && h != cfg.Host.DefaultRuntimeClass {
			r.Warn = true
			r.Detail += "; pods asking for this runtime class will fail"
		}
		out = append(out, r)
	}
	out = append(out, checkCgroups(cfg.Host.CgroupDriver)...)
	if p, ok := cfg.Plugins[cfg.Host.NetworkPlugin]; ok {
		out = append(out, checkCNI(p)...)
	}
	root := cfg.Host.Root
	if p, ok := cfg.Plugins[cfg.Host.StoragePlugin]; ok {
		if d, _ := p.Config["driver"].(string); d == "" || d == "overlay" {
			out = append(out, checkOverlay(root))
		}
	}
	return out
}

func checkRoot() Result {
	if os.Geteuid() != 0 {
		return Result{Name: "privileges", Detail: fmt.Sprintf("running as uid %d", os.Geteuid()), Fix: "run berth as root"}
	}
	return Result{OK: true, Name: "privileges", Detail: "running as root"}
}

func checkPlugin(cfg *config.Config, p *config.Plugin) Result {
	name := "plugin " + p.Name
	path := cfg.PluginPath(p)
	st, err := os.Stat(path)
	if err != nil {
		return Result{Name: name, Detail: err.Error(), Fix: "run `make build` (or `make install`), or fix plugins." + p.Name + ".path"}
	}
	if st.Mode()&0o111 == 0 {
		return Result{Name: name, Detail: path + " is not executable", Fix: "chmod 0755 " + path}
	}
	if st.Mode()&0o022 != 0 {
		return Result{Name: name, Detail: path + " is writable by group or others", Fix: "chmod go-w " + path}
	}
	return Result{OK: true, Name: name, Detail: path}
}

func checkRuntimeClass(handler string, rc *config.RuntimeClass) Result {
	name := "runtime class " + handler
	for _, key := range []string{"binary", "shim"} {
		bin, _ := rc.Config[key].(string)
		if bin == "" {
			continue
		}
		path, err := exec.LookPath(bin)
		if err != nil {
			return Result{Name: name, Detail: fmt.Sprintf("%s %q not found", key, bin), Fix: installHint(bin)}
		}
		return Result{OK: true, Name: name, Detail: path}
	}
	return Result{OK: true, Name: name, Detail: "plugin " + rc.Plugin + " (plugin default binary)"}
}

func installHint(bin string) string {
	switch filepath.Base(bin) {
	case "runc":
		return "apt-get install -y runc"
	case "runsc":
		return "apt-get install -y runsc (or remove the runsc runtime class)"
	case "containerd-shim-kata-v2":
		return "install Kata Containers, or remove the kata runtime class"
	case "containerd-shim-runc-v2":
		return "apt-get install -y containerd"
	}
	return "install " + bin + " or fix its path in plugins.toml"
}

func checkCgroups(driver string) []Result {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return []Result{{Name: "cgroups", Detail: err.Error(), Fix: "mount cgroupfs at /sys/fs/cgroup"}}
	}
	version := "v1"
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		version = "v2 (unified)"
	} else if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil {
		version = "v1 (hybrid, with a unified hierarchy)"
	}
	out := []Result{{OK: true, Name: "cgroups", Detail: version}}
	r := Result{OK: true, Name: "cgroup driver", Detail: driver}
	if driver == "systemd" {
		if _, err := os.Stat("/run/systemd/system"); err != nil {
			r = Result{Name: "cgroup driver", Detail: "systemd driver configured but systemd is not running", Fix: "set host.cgroup_driver = \"cgroupfs\" (and kubelet's cgroupDriver to match)"}
		}
	}
	return append(out, r)
}

func checkCNI(p *config.Plugin) []Result {
	var out []Result
	var binDirs []string
	if dirs, ok := p.Config["bin_dirs"].([]any); ok {
		for _, d := range dirs {
			if s, ok := d.(string); ok {
				binDirs = append(binDirs, s)
			}
		}
	}
	found := ""
	for _, d := range binDirs {
		if _, err := os.Stat(filepath.Join(d, "bridge")); err == nil {
			found = d
			break
		}
	}
	if found == "" {
		out = append(out, Result{Name: "CNI plugins", Detail: "no bridge plugin in " + strings.Join(binDirs, ", "), Fix: "apt-get install -y containernetworking-plugins"})
	} else {
		out = append(out, Result{OK: true, Name: "CNI plugins", Detail: found})
	}
	confDir, _ := p.Config["conf_dir"].(string)
	if confDir == "" {
		confDir = "/etc/cni/net.d"
	}
	entries, err := os.ReadDir(confDir)
	n := 0
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
			n++
		}
	}
	if err != nil || n == 0 {
		out = append(out, Result{Name: "CNI config", Detail: "no network config in " + confDir + " (NetworkReady stays false)", Fix: "write a CNI conflist to " + confDir + " (see README: Quick start)"})
	} else {
		out = append(out, Result{OK: true, Name: "CNI config", Detail: fmt.Sprintf("%d file(s) in %s", n, confDir)})
	}
	return out
}

// checkOverlay mounts a throw-away overlay under the storage root.
func checkOverlay(root string) Result {
	name := "overlay on " + root
	if err := os.MkdirAll(root, 0o711); err != nil {
		return Result{Name: name, Detail: err.Error(), Fix: "make " + root + " creatable, or set host.root"}
	}
	dir, err := os.MkdirTemp(root, ".overlay-check-")
	if err != nil {
		return Result{Name: name, Detail: err.Error(), Fix: "make " + root + " writable"}
	}
	defer os.RemoveAll(dir)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return Result{Name: name, Detail: err.Error(), Fix: "make " + root + " writable"}
		}
	}
	opts := fmt.Sprintf("lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", dir, dir, dir)
	if err := unix.Mount("overlay", filepath.Join(dir, "merged"), "overlay", 0, opts); err != nil {
		return Result{Name: name, Detail: "cannot mount overlay: " + err.Error(), Fix: "modprobe overlay, or set plugins.overlay.config.driver = \"vfs\""}
	}
	_ = unix.Unmount(filepath.Join(dir, "merged"), unix.MNT_DETACH)
	return Result{OK: true, Name: name, Detail: "overlay mounts work"}
}

func sortedHandlers(cfg *config.Config) []string {
	return slices.Sorted(maps.Keys(cfg.RuntimeClasses))
}
