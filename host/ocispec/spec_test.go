package ocispec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nwww-data:x:33:33:www:/var/www:/bin/false\n"
const group = "root:x:0:\napp:x:1000:\nextra:x:2000:app\nweb:x:3000:www-data,app\n"

// base returns a valid input; cases edit it.
func base() Container {
	return Container{
		ID: "c1",
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "main"},
			Image:    &runtimeapi.ImageSpec{Image: "busybox"},
			Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{}},
		},
		Sandbox: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod", Namespace: "ns", Uid: "uid"},
			Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{}},
		},
		Image:  imgspecv1.ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"arg0"}, Env: []string{"A=image", "PATH=/image/bin"}, WorkingDir: "/work"},
		Rootfs: "/rootfs",
		Passwd: passwd, Group: group,
		Pod: Pod{NetNS: "/run/ns/net", IPCNS: "/run/ns/ipc", UTSNS: "/run/ns/uts", PIDNS: "/run/ns/pid",
			CgroupParent: "/kubepods/pod1", ShmPath: "/run/pod/shm", HostsPath: "/run/pod/hosts", ResolvPath: "/run/pod/resolv.conf", Hostname: "pod"},
		Host: Host{Capabilities: AllCapabilities, CgroupDriver: "cgroupfs",
			StatDevice: func(p string) (specs.LinuxDevice, error) {
				if p == "/dev/null" {
					return specs.LinuxDevice{Type: "c", Major: 1, Minor: 3}, nil
				}
				return specs.LinuxDevice{}, errors.New("no such device")
			}},
	}
}

func sc(c *Container) *runtimeapi.LinuxContainerSecurityContext {
	return c.Config.Linux.SecurityContext
}

func i64(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }

func nsPath(s *specs.Spec, t specs.LinuxNamespaceType) (string, bool) {
	for _, n := range s.Linux.Namespaces {
		if n.Type == t {
			return n.Path, true
		}
	}
	return "", false
}

func mount(s *specs.Spec, dst string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dst {
			return &s.Mounts[i]
		}
	}
	return nil
}

func TestBuild(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Container)
		check func(*testing.T, *specs.Spec)
	}{
		{"image entrypoint and cmd", nil, func(t *testing.T, s *specs.Spec) {
			if !slices.Equal(s.Process.Args, []string{"/entry", "arg0"}) {
				t.Errorf("args %v", s.Process.Args)
			}
		}},
		{"command replaces entrypoint and cmd", func(c *Container) { c.Config.Command = []string{"/bin/sh"} }, func(t *testing.T, s *specs.Spec) {
			if !slices.Equal(s.Process.Args, []string{"/bin/sh"}) {
				t.Errorf("args %v", s.Process.Args)
			}
		}},
		{"args replace cmd", func(c *Container) { c.Config.Args = []string{"x", "y"} }, func(t *testing.T, s *specs.Spec) {
			if !slices.Equal(s.Process.Args, []string{"/entry", "x", "y"}) {
				t.Errorf("args %v", s.Process.Args)
			}
		}},
		{"env merge, CRI wins, HOME added", func(c *Container) {
			c.Config.Envs = []*runtimeapi.KeyValue{{Key: "A", Value: []byte("cri")}, {Key: "B", Value: []byte("b")}}
		}, func(t *testing.T, s *specs.Spec) {
			want := []string{"A=cri", "PATH=/image/bin", "B=b", "HOME=/root"}
			if !slices.Equal(s.Process.Env, want) {
				t.Errorf("env %v, want %v", s.Process.Env, want)
			}
		}},
		{"working dir from image, CRI wins", func(c *Container) { c.Config.WorkingDir = "/cri" }, func(t *testing.T, s *specs.Spec) {
			if s.Process.Cwd != "/cri" {
				t.Errorf("cwd %q", s.Process.Cwd)
			}
		}},
		{"image user by name with groups from /etc/group", func(c *Container) { c.Image.User = "app" }, func(t *testing.T, s *specs.Spec) {
			u := s.Process.User
			if u.UID != 1000 || u.GID != 1000 || !slices.Equal(u.AdditionalGids, []uint32{2000, 3000}) {
				t.Errorf("user %+v", u)
			}
		}},
		{"image user uid:gid", func(c *Container) { c.Image.User = "1003:1004" }, func(t *testing.T, s *specs.Spec) {
			if u := s.Process.User; u.UID != 1003 || u.GID != 1004 {
				t.Errorf("user %+v", u)
			}
		}},
		{"image user name:gid", func(c *Container) { c.Image.User = "www-data:1004" }, func(t *testing.T, s *specs.Spec) {
			if u := s.Process.User; u.UID != 33 || u.GID != 1004 || !slices.Equal(u.AdditionalGids, []uint32{3000}) {
				t.Errorf("user %+v", u)
			}
		}},
		{"run_as_user overrides image user", func(c *Container) { c.Image.User = "app"; sc(c).RunAsUser = i64(1001) }, func(t *testing.T, s *specs.Spec) {
			if u := s.Process.User; u.UID != 1001 || u.GID != 0 {
				t.Errorf("user %+v", u)
			}
		}},
		{"run_as_username and run_as_group", func(c *Container) { sc(c).RunAsUsername = "app"; sc(c).RunAsGroup = i64(5000) }, func(t *testing.T, s *specs.Spec) {
			if u := s.Process.User; u.UID != 1000 || u.GID != 5000 {
				t.Errorf("user %+v", u)
			}
		}},
		{"supplemental groups merge", func(c *Container) { c.Image.User = "app"; sc(c).SupplementalGroups = []int64{4000} }, func(t *testing.T, s *specs.Spec) {
			if u := s.Process.User; !slices.Equal(u.AdditionalGids, []uint32{2000, 3000, 4000}) {
				t.Errorf("gids %v", u.AdditionalGids)
			}
		}},
		{"supplemental groups strict ignores /etc/group", func(c *Container) {
			c.Image.User = "app"
			sc(c).SupplementalGroups = []int64{4000}
			sc(c).SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsPolicy_Strict
		}, func(t *testing.T, s *specs.Spec) {
			if u := s.Process.User; !slices.Equal(u.AdditionalGids, []uint32{4000}) {
				t.Errorf("gids %v", u.AdditionalGids)
			}
		}},
		{"default capabilities", nil, func(t *testing.T, s *specs.Spec) {
			if len(s.Process.Capabilities.Bounding) != len(DefaultCapabilities) {
				t.Errorf("caps %v", s.Process.Capabilities.Bounding)
			}
		}},
		{"add and drop capabilities", func(c *Container) {
			sc(c).Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN", "sys_time"}, DropCapabilities: []string{"CAP_KILL"}}
		}, func(t *testing.T, s *specs.Spec) {
			b := s.Process.Capabilities.Bounding
			if !slices.Contains(b, "CAP_NET_ADMIN") || !slices.Contains(b, "CAP_SYS_TIME") || slices.Contains(b, "CAP_KILL") {
				t.Errorf("caps %v", b)
			}
		}},
		{"drop ALL then add one", func(c *Container) {
			sc(c).Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"CHOWN"}, DropCapabilities: []string{"ALL"}}
		}, func(t *testing.T, s *specs.Spec) {
			if !slices.Equal(s.Process.Capabilities.Bounding, []string{"CAP_CHOWN"}) {
				t.Errorf("caps %v", s.Process.Capabilities.Bounding)
			}
		}},
		{"add ALL gets only what the host holds", func(c *Container) {
			c.Host.Capabilities = []string{"CAP_CHOWN", "CAP_KILL"}
			sc(c).Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"ALL"}}
		}, func(t *testing.T, s *specs.Spec) {
			if !slices.Equal(s.Process.Capabilities.Bounding, []string{"CAP_CHOWN", "CAP_KILL"}) {
				t.Errorf("caps %v", s.Process.Capabilities.Bounding)
			}
		}},
		{"privileged: host capabilities, host devices, rw sysfs, no masks, no seccomp", func(c *Container) {
			c.Sandbox.Linux.SecurityContext.Privileged = true
			sc(c).Privileged = true
			sc(c).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			c.Host.Capabilities = []string{"CAP_SYS_ADMIN", "CAP_NET_ADMIN"}
			c.Host.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}}
		}, func(t *testing.T, s *specs.Spec) {
			if !slices.Equal(s.Process.Capabilities.Bounding, []string{"CAP_NET_ADMIN", "CAP_SYS_ADMIN"}) {
				t.Errorf("caps %v", s.Process.Capabilities.Bounding)
			}
			if len(s.Linux.Devices) != 1 || !s.Linux.Resources.Devices[0].Allow {
				t.Errorf("devices %v %v", s.Linux.Devices, s.Linux.Resources.Devices)
			}
			if slices.Contains(mount(s, "/sys").Options, "ro") || s.Linux.MaskedPaths != nil || s.Linux.Seccomp != nil {
				t.Errorf("privileged container is confined: %v %v %v", mount(s, "/sys").Options, s.Linux.MaskedPaths, s.Linux.Seccomp)
			}
		}},
		{"no_new_privs and read-only rootfs", func(c *Container) { sc(c).NoNewPrivs = true; sc(c).ReadonlyRootfs = true }, func(t *testing.T, s *specs.Spec) {
			if !s.Process.NoNewPrivileges || !s.Root.Readonly {
				t.Errorf("nnp %v ro %v", s.Process.NoNewPrivileges, s.Root.Readonly)
			}
		}},
		{"default masked and read-only paths", nil, func(t *testing.T, s *specs.Spec) {
			if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
				t.Errorf("masked %v ro %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
			}
		}},
		{"explicit masked paths", func(c *Container) { sc(c).MaskedPaths = []string{"/secret"}; sc(c).ReadonlyPaths = []string{} }, func(t *testing.T, s *specs.Spec) {
			if !slices.Equal(s.Linux.MaskedPaths, []string{"/secret"}) || len(s.Linux.ReadonlyPaths) != 0 {
				t.Errorf("masked %v ro %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
			}
		}},
		{"seccomp unconfined by default", nil, func(t *testing.T, s *specs.Spec) {
			if s.Linux.Seccomp != nil {
				t.Error("seccomp set")
			}
		}},
		{"seccomp RuntimeDefault", func(c *Container) {
			sc(c).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
		}, func(t *testing.T, s *specs.Spec) {
			if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno || slices.Contains(s.Linux.Seccomp.Syscalls[0].Names, "sethostname") {
				t.Errorf("seccomp %+v", s.Linux.Seccomp)
			}
		}},
		{"seccomp RuntimeDefault with SYS_ADMIN allows sethostname", func(c *Container) {
			sc(c).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			sc(c).Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
		}, func(t *testing.T, s *specs.Spec) {
			if !slices.Contains(s.Linux.Seccomp.Syscalls[0].Names, "sethostname") {
				t.Error("sethostname not allowed with CAP_SYS_ADMIN")
			}
		}},
		{"legacy seccomp_profile_path runtime/default", func(c *Container) { sc(c).SeccompProfilePath = "runtime/default" }, func(t *testing.T, s *specs.Spec) {
			if s.Linux.Seccomp == nil {
				t.Error("no seccomp")
			}
		}},
		{"namespaces joined from the pod", nil, func(t *testing.T, s *specs.Spec) {
			for typ, want := range map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "/run/ns/net", specs.IPCNamespace: "/run/ns/ipc", specs.UTSNamespace: "/run/ns/uts", specs.PIDNamespace: "/run/ns/pid"} {
				if p, ok := nsPath(s, typ); !ok || p != want {
					t.Errorf("%s namespace %q %v", typ, p, ok)
				}
			}
			if _, ok := nsPath(s, specs.MountNamespace); !ok {
				t.Error("no mount namespace")
			}
		}},
		{"host network and pid", func(c *Container) {
			sc(c).NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE}
		}, func(t *testing.T, s *specs.Spec) {
			for _, typ := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.PIDNamespace, specs.UTSNamespace} {
				if _, ok := nsPath(s, typ); ok {
					t.Errorf("%s namespace set for a host namespace", typ)
				}
			}
			if s.Hostname != "" {
				t.Errorf("hostname %q set in the host's UTS namespace", s.Hostname)
			}
		}},
		{"container pid namespace", func(c *Container) {
			sc(c).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
		}, func(t *testing.T, s *specs.Spec) {
			if p, ok := nsPath(s, specs.PIDNamespace); !ok || p != "" {
				t.Errorf("pid namespace %q %v", p, ok)
			}
		}},
		{"target pid namespace", func(c *Container) {
			sc(c).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "c0"}
			c.Pod.TargetPIDNS = "/proc/42/ns/pid"
		}, func(t *testing.T, s *specs.Spec) {
			if p, _ := nsPath(s, specs.PIDNamespace); p != "/proc/42/ns/pid" {
				t.Errorf("pid namespace %q", p)
			}
		}},
		{"resources", func(c *Container) {
			c.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000,
				CpusetCpus: "0", MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 128 << 20, OomScoreAdj: 500,
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}}, Unified: map[string]string{"memory.high": "1G"}}
		}, func(t *testing.T, s *specs.Spec) {
			r := s.Linux.Resources
			if *r.CPU.Shares != 512 || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || r.CPU.Cpus != "0" ||
				*r.Memory.Limit != 64<<20 || *r.Memory.Swap != 128<<20 || *s.Process.OOMScoreAdj != 500 ||
				len(r.HugepageLimits) != 1 || r.Unified["memory.high"] != "1G" {
				t.Errorf("resources %+v oom %d", r, *s.Process.OOMScoreAdj)
			}
		}},
		{"negative oom_score_adj clamped to the daemon's", func(c *Container) {
			c.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{OomScoreAdj: -998}
			c.Host.MinOOMScoreAdj = 0
		}, func(t *testing.T, s *specs.Spec) {
			if *s.Process.OOMScoreAdj != 0 {
				t.Errorf("oom %d", *s.Process.OOMScoreAdj)
			}
		}},
		{"mounts with propagation and read-only", func(c *Container) {
			c.Config.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/data", HostPath: "/srv/data", Readonly: true},
				{ContainerPath: "/slave", HostPath: "/srv/slave", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
				{ContainerPath: "/etc/hosts", HostPath: "/custom/hosts", SelinuxRelabel: true},
			}
		}, func(t *testing.T, s *specs.Spec) {
			if m := mount(s, "/data"); m == nil || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rprivate") {
				t.Errorf("/data %+v", m)
			}
			if m := mount(s, "/slave"); m == nil || !slices.Contains(m.Options, "rslave") || s.Linux.RootfsPropagation != "rslave" {
				t.Errorf("/slave %+v root %q", m, s.Linux.RootfsPropagation)
			}
			if m := mount(s, "/etc/hosts"); m == nil || m.Source != "/custom/hosts" {
				t.Errorf("CRI mount does not replace the pod's /etc/hosts: %+v", m)
			}
			if m := mount(s, "/dev/shm"); m == nil || m.Source != "/run/pod/shm" {
				t.Errorf("/dev/shm %+v", m)
			}
		}},
		{"device", func(c *Container) {
			c.Config.Devices = []*runtimeapi.Device{{ContainerPath: "/dev/mynull", HostPath: "/dev/null", Permissions: "rw"}}
		}, func(t *testing.T, s *specs.Spec) {
			if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/mynull" || s.Linux.Devices[0].Major != 1 {
				t.Errorf("devices %+v", s.Linux.Devices)
			}
			last := s.Linux.Resources.Devices[len(s.Linux.Resources.Devices)-1]
			if !last.Allow || last.Access != "rw" || *last.Major != 1 || *last.Minor != 3 {
				t.Errorf("device cgroup %+v", last)
			}
		}},
		{"cgroups path, cgroupfs and systemd", nil, func(t *testing.T, s *specs.Spec) {
			if s.Linux.CgroupsPath != "/kubepods/pod1/c1" {
				t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
			}
		}},
		{"systemd cgroups path", func(c *Container) { c.Host.CgroupDriver = "systemd"; c.Pod.CgroupParent = "kubepods-pod1.slice" }, func(t *testing.T, s *specs.Spec) {
			if s.Linux.CgroupsPath != "kubepods-pod1.slice:berth:c1" {
				t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
			}
		}},
		{"recursive read-only mount where the runtime can", func(c *Container) {
			c.Host.RecursiveReadOnly = true
			c.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/s", Readonly: true, RecursiveReadOnly: true}}
		}, func(t *testing.T, s *specs.Spec) {
			for _, m := range s.Mounts {
				if m.Destination == "/d" {
					if strings.Join(m.Options, ",") != "rbind,rprivate,ro,rro" {
						t.Errorf("rro mount options %v", m.Options)
					}
					return
				}
			}
			t.Error("no /d mount")
		}},
		{"sysctls, hostname and annotations", func(c *Container) {
			c.Sandbox.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
			c.Config.Annotations = map[string]string{"a": "b"}
			c.Config.Tty = true
		}, func(t *testing.T, s *specs.Spec) {
			if s.Linux.Sysctl["net.ipv4.ip_forward"] != "1" || s.Hostname != "pod" || s.Annotations["a"] != "b" ||
				s.Annotations["io.kubernetes.cri.container-name"] != "main" || !s.Process.Terminal {
				t.Errorf("sysctl %v hostname %q annotations %v tty %v", s.Linux.Sysctl, s.Hostname, s.Annotations, s.Process.Terminal)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			if tc.edit != nil {
				tc.edit(&c)
			}
			s, err := Build(c)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
		})
	}
}

func TestBuildInvalid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Container)
		field string
	}{
		{"missing metadata name", func(c *Container) { c.Config.Metadata.Name = "" }, "config.metadata.name"},
		{"no command at all", func(c *Container) { c.Image.Entrypoint, c.Image.Cmd = nil, nil }, "config.command"},
		{"relative working dir", func(c *Container) { c.Config.WorkingDir = "work" }, "config.working_dir"},
		{"relative mount container path", func(c *Container) {
			c.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "data", HostPath: "/srv"}}
		}, "config.mounts[0].container_path"},
		{"relative mount host path", func(c *Container) {
			c.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "srv"}}
		}, "config.mounts[0].host_path"},
		{"bidirectional propagation unprivileged", func(c *Container) {
			c.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/s", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
		}, "config.mounts[0].propagation"},
		{"recursive read-only without readonly", func(c *Container) {
			c.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/s", RecursiveReadOnly: true}}
		}, "config.mounts[0].recursive_read_only"},
		{"recursive read-only with host-to-container propagation", func(c *Container) {
			c.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/s", Readonly: true, RecursiveReadOnly: true,
				Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}}
		}, "config.mounts[0].recursive_read_only"},
		{"recursive read-only where the runtime cannot", func(c *Container) {
			c.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/s", Readonly: true, RecursiveReadOnly: true}}
		}, "config.mounts[0].recursive_read_only"},
		{"unknown seccomp profile file", func(c *Container) {
			sc(c).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/nonexistent/profile.json"}
		}, "config.linux.security_context.seccomp.localhost_ref"},
		{"relative seccomp profile", func(c *Container) {
			sc(c).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "profile.json"}
		}, "config.linux.security_context.seccomp.localhost_ref"},
		{"negative cpu shares", func(c *Container) {
			c.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: -1}
		}, "config.linux.resources.cpu_shares"},
		{"cpuset cpus not a list", func(c *Container) {
			c.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{CpusetCpus: "0-1;rm -rf"}
		}, "config.linux.resources.cpuset_cpus"},
		{"cpuset mems not a list", func(c *Container) {
			c.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{CpusetMems: "0,,1"}
		}, "config.linux.resources.cpuset_mems"},
		{"negative memory limit", func(c *Container) {
			c.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -5}
		}, "config.linux.resources.memory_limit_in_bytes"},
		{"swap below memory", func(c *Container) {
			c.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 100, MemorySwapLimitInBytes: 50}
		}, "config.linux.resources.memory_swap_limit_in_bytes"},
		{"oom score out of range", func(c *Container) {
			c.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{OomScoreAdj: 1001}
		}, "config.linux.resources.oom_score_adj"},
		{"unknown capability", func(c *Container) {
			sc(c).Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"FLY"}}
		}, "config.linux.security_context.capabilities"},
		{"run_as_group without user", func(c *Container) { sc(c).RunAsGroup = i64(5) }, "config.linux.security_context.run_as_group"},
		{"unknown user name", func(c *Container) { sc(c).RunAsUsername = "nobody-here" }, "config.linux.security_context"},
		{"privileged container in unprivileged pod", func(c *Container) { sc(c).Privileged = true }, "config.linux.security_context.privileged"},
		{"apparmor profile without apparmor", func(c *Container) {
			sc(c).Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "p"}
		}, "config.linux.security_context.apparmor"},
		{"env key with =", func(c *Container) {
			c.Config.Envs = []*runtimeapi.KeyValue{{Key: "A=B", Value: []byte("x")}}
		}, "config.envs[0].key"},
		{"device not found", func(c *Container) {
			c.Config.Devices = []*runtimeapi.Device{{ContainerPath: "/dev/x", HostPath: "/dev/nothing"}}
		}, "config.devices[0].host_path"},
		{"bad device permissions", func(c *Container) {
			c.Config.Devices = []*runtimeapi.Device{{ContainerPath: "/dev/x", HostPath: "/dev/null", Permissions: "rwx"}}
		}, "config.devices[0].permissions"},
		{"target pid namespace unknown", func(c *Container) {
			sc(c).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET}
		}, "config.linux.security_context.namespace_options.target_id"},
		{"container ipc namespace", func(c *Container) {
			sc(c).NamespaceOptions = &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_CONTAINER}
		}, "config.linux.security_context.namespace_options.ipc"},
		{"image volume", func(c *Container) {
			c.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/d", Image: &runtimeapi.ImageSpec{Image: "x"}}}
		}, "config.mounts[0].image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			_, err := Build(c)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FieldError", err)
			}
			if fe.Field != tc.field {
				t.Fatalf("field = %q (%v), want %q", fe.Field, err, tc.field)
			}
		})
	}
}

func TestLocalhostSeccomp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "profile.json")
	if err := os.WriteFile(p, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := base()
	sc(&c).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "localhost/" + p}
	s, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp.DefaultAction != specs.ActAllow || s.Linux.Seccomp.Syscalls[0].Names[0] != "sethostname" {
		t.Fatalf("seccomp %+v", s.Linux.Seccomp)
	}
	c.Host.SeccompRoot = "/var/lib/kubelet/seccomp"
	if _, err := Build(c); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("profile outside the seccomp root: %v", err)
	}
}
