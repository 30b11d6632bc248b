package ocispec

import (
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// mounts sets the default filesystems, the pod's /etc files and /dev/shm,
// and the CRI mounts (which win over defaults at the same path).
func mounts(spec *specs.Spec, c Container, privileged bool) error {
	sysOpts := []string{"nosuid", "noexec", "nodev", "ro"}
	cgOpts := []string{"nosuid", "noexec", "nodev", "relatime", "ro"}
	if privileged {
		sysOpts, cgOpts = sysOpts[:3], cgOpts[:4]
	}
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: cgOpts},
	}
	if c.Pod.ShmPath != "" {
		ms = append(ms, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: c.Pod.ShmPath, Options: []string{"rbind", "nosuid", "noexec", "nodev"}})
	} else {
		ms = append(ms, specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
	}
	podFile := func(dst, src string) {
		if src != "" {
			ms = append(ms, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", "rw"}})
		}
	}
	podFile("/etc/hosts", c.Pod.HostsPath)
	podFile("/etc/resolv.conf", c.Pod.ResolvPath)
	podFile("/etc/hostname", c.Pod.HostnamePath)

	rootProp := ""
	for i, m := range c.Config.GetMounts() {
		field := fmt.Sprintf("config.mounts[%d]", i)
		dst, src := m.GetContainerPath(), m.GetHostPath()
		if dst == "" || !filepath.IsAbs(dst) {
			return fieldErr(field+".container_path", "%q must be an absolute path", dst)
		}
		if m.GetImage() != nil && m.GetImage().GetImage() != "" {
			return fieldErr(field+".image", "image volumes are not supported yet")
		}
		if src == "" || !filepath.IsAbs(src) {
			return fieldErr(field+".host_path", "%q must be an absolute path", src)
		}
		if len(m.GetUidMappings()) > 0 || len(m.GetGidMappings()) > 0 {
			return fieldErr(field+".uidMappings", "idmapped mounts are not supported by this runtime handler")
		}
		opts := []string{"rbind"}
		switch m.GetPropagation() {
		case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
			opts = append(opts, "rprivate")
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			opts = append(opts, "rslave")
			if rootProp != "rshared" {
				rootProp = "rslave"
			}
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			if !privileged {
				return fieldErr(field+".propagation", "bidirectional propagation needs a privileged container")
			}
			opts = append(opts, "rshared")
			rootProp = "rshared"
		default:
			return fieldErr(field+".propagation", "unknown propagation %v", m.GetPropagation())
		}
		if m.GetRecursiveReadOnly() {
			if !m.GetReadonly() {
				return fieldErr(field+".recursive_read_only", "needs readonly")
			}
			if m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				return fieldErr(field+".recursive_read_only", "needs private propagation")
			}
			if !c.Host.RecursiveReadOnly {
				return fieldErr(field+".recursive_read_only", "recursive read-only mounts are not supported by this runtime handler")
			}
			opts = append(opts, "ro", "rro")
		} else if m.GetReadonly() {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		// SELinux relabelling is a no-op: this node type has no SELinux.
		ms = removeMount(ms, dst)
		ms = append(ms, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	if rootProp != "" {
		spec.Linux.RootfsPropagation = rootProp
	}
	spec.Mounts = ms
	return nil
}

func removeMount(ms []specs.Mount, dst string) []specs.Mount {
	out := ms[:0]
	for _, m := range ms {
		if filepath.Clean(m.Destination) != filepath.Clean(dst) {
			out = append(out, m)
		}
	}
	return out
}

// devices adds CRI devices (and every host device for privileged
// containers) with matching device cgroup rules, on top of deny-all (runc
// adds its defaults: null, zero, full, random, urandom, tty, ptmx, pts).
func devices(spec *specs.Spec, devs []*runtimeapi.Device, privileged bool, host Host) error {
	spec.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	if privileged {
		spec.Linux.Devices = append(spec.Linux.Devices, host.Devices...)
		spec.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}
	for i, d := range devs {
		field := fmt.Sprintf("config.devices[%d]", i)
		if !filepath.IsAbs(d.GetContainerPath()) {
			return fieldErr(field+".container_path", "%q must be an absolute path", d.GetContainerPath())
		}
		if !filepath.IsAbs(d.GetHostPath()) {
			return fieldErr(field+".host_path", "%q must be an absolute path", d.GetHostPath())
		}
		perms := d.GetPermissions()
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return fieldErr(field+".permissions", "%q may only contain r, w and m", perms)
		}
		if host.StatDevice == nil {
			return fieldErr(field+".host_path", "cannot inspect host devices")
		}
		dev, err := host.StatDevice(d.GetHostPath())
		if err != nil {
			return fieldErr(field+".host_path", "%v", err)
		}
		dev.Path = d.GetContainerPath()
		spec.Linux.Devices = append(spec.Linux.Devices, dev)
		major, minor := dev.Major, dev.Minor
		spec.Linux.Resources.Devices = append(spec.Linux.Resources.Devices,
			specs.LinuxDeviceCgroup{Allow: true, Type: dev.Type, Major: &major, Minor: &minor, Access: perms})
	}
	return nil
}
