// Package ocispec is the one place where a CRI container request becomes an
// OCI runtime spec: process (command, environment, user and groups), mounts,
// devices, Linux resources, security context (privileged, capabilities,
// seccomp, no_new_privs, masked and read-only paths, read-only root),
// namespaces joined from the pod, OOM score, annotations. It is pure: the
// caller gathers the inputs (image config, the image's /etc/passwd and
// /etc/group, the pod's namespace paths, what the host allows) and gets a
// spec or a *FieldError naming the offending CRI field.
package ocispec

import (
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FieldError is an invalid CRI request, naming the field.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Pod is what a container takes from its pod sandbox.
type Pod struct {
	// Namespace paths to join; "" means the host's (for net, ipc, uts, pid
	// when the pod asks for host namespaces).
	NetNS, IPCNS, UTSNS, PIDNS string
	// TargetPIDNS is the PID namespace of the target container when the
	// container asks for NamespaceMode_TARGET.
	TargetPIDNS string
	// CgroupParent is the pod's cgroup (cgroupfs path or systemd slice).
	CgroupParent string
	// ShmPath is the pod's /dev/shm, bind-mounted into its containers ("" =
	// a private tmpfs, for host IPC pods the host's /dev/shm).
	ShmPath string
	// HostsPath, ResolvPath and HostnamePath are the pod's /etc files.
	HostsPath, ResolvPath, HostnamePath string
	Hostname                            string
}

// Host is what the node allows.
type Host struct {
	// Capabilities are those the daemon holds; no container gets more.
	Capabilities []string
	// MinOOMScoreAdj is the lowest oom_score_adj the daemon may set (its
	// own, when it lacks CAP_SYS_RESOURCE); lower requests are raised to it.
	MinOOMScoreAdj int
	// CgroupDriver is "cgroupfs" or "systemd".
	CgroupDriver string
	// SeccompRoot confines Localhost seccomp profiles; "" allows any path.
	SeccompRoot string
	// AppArmor reports whether the kernel has AppArmor enabled.
	AppArmor bool
	// RecursiveReadOnly: the runtime can make mounts read-only
	// recursively (mount option "rro").
	RecursiveReadOnly bool
	// Devices are the host's devices, given to privileged containers.
	Devices []specs.LinuxDevice
	// StatDevice describes a host device node (for CRI devices).
	StatDevice func(path string) (specs.LinuxDevice, error)
}

// Container is the input of Build.
type Container struct {
	ID      string
	Config  *runtimeapi.ContainerConfig
	Sandbox *runtimeapi.PodSandboxConfig
	// Image is the image's config (Entrypoint, Cmd, Env, User, WorkingDir).
	Image imgspecv1.ImageConfig
	// Rootfs is the mounted root filesystem.
	Rootfs string
	// Passwd and Group are the image's /etc/passwd and /etc/group ("" if none).
	Passwd, Group string
	Pod           Pod
	Host          Host
}

// Default masked and read-only paths, as CRI-O and containerd use when the
// CRI request carries none (kubelet normally sends them).
var (
	DefaultMaskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"}
	DefaultReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Build translates a CRI container into an OCI runtime spec.
func Build(c Container) (*specs.Spec, error) {
	cfg := c.Config
	if cfg == nil {
		return nil, fieldErr("config", "must be set")
	}
	if cfg.GetMetadata().GetName() == "" {
		return nil, fieldErr("config.metadata.name", "must not be empty")
	}
	sc := cfg.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()
	if privileged && !c.Sandbox.GetLinux().GetSecurityContext().GetPrivileged() {
		return nil, fieldErr("config.linux.security_context.privileged", "a privileged container needs a privileged pod sandbox")
	}

	args, err := command(cfg.GetCommand(), cfg.GetArgs(), c.Image.Entrypoint, c.Image.Cmd)
	if err != nil {
		return nil, err
	}
	if sc.GetRunAsGroup() != nil && sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
		return nil, fieldErr("config.linux.security_context.run_as_group", "needs run_as_user or run_as_username")
	}
	if u := sc.GetRunAsUser(); u != nil && (u.GetValue() < 0 || u.GetValue() > 1<<32-1) {
		return nil, fieldErr("config.linux.security_context.run_as_user", "%d out of range", u.GetValue())
	}
	user, err := resolveUser(c.Image.User, int64Ptr(sc.GetRunAsUser()), sc.GetRunAsUsername(), int64Ptr(sc.GetRunAsGroup()),
		c.Passwd, c.Group, sc.GetSupplementalGroups(), sc.GetSupplementalGroupsPolicy() == runtimeapi.SupplementalGroupsPolicy_Strict)
	if err != nil {
		return nil, fieldErr("config.linux.security_context", "%v", err)
	}

	env, err := environment(c.Image.Env, cfg.GetEnvs(), user.home)
	if err != nil {
		return nil, err
	}
	cwd := cfg.GetWorkingDir()
	if cwd == "" {
		cwd = c.Image.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	if !filepath.IsAbs(cwd) {
		return nil, fieldErr("config.working_dir", "%q must be absolute", cwd)
	}

	caps, err := capabilitySet(privileged, sc.GetCapabilities().GetAddCapabilities(), sc.GetCapabilities().GetDropCapabilities(), c.Host.Capabilities)
	if err != nil {
		return nil, fieldErr("config.linux.security_context.capabilities", "%v", err)
	}
	ambient := []string{}
	for _, a := range sc.GetCapabilities().GetAddAmbientCapabilities() {
		n, err := normaliseCap(a)
		if err != nil {
			return nil, fieldErr("config.linux.security_context.capabilities.add_ambient_capabilities", "%v", err)
		}
		ambient = append(ambient, n)
	}

	spec := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: c.Rootfs, Readonly: sc.GetReadonlyRootfs()},
		Hostname: c.Pod.Hostname,
		Process: &specs.Process{
			Terminal: cfg.GetTty(),
			User: specs.User{UID: user.uid, GID: user.gid, AdditionalGids: user.additionalGids,
				Umask: uint32Ptr(0o022)},
			Args: args,
			Env:  env,
			Cwd:  cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps, Inheritable: nil, Ambient: intersect(ambient, caps),
			},
			NoNewPrivileges: sc.GetNoNewPrivs(),
			// No rlimits: the container inherits the runtime's, which this
			// node may not raise (raising needs CAP_SYS_RESOURCE).
		},
		Annotations: map[string]string{},
		Linux: &specs.Linux{
			Resources: &specs.LinuxResources{},
		},
	}
	if user.uid != 0 {
		// A non-root process keeps no capabilities across execve unless ambient.
		spec.Process.Capabilities.Effective = intersect(ambient, caps)
		spec.Process.Capabilities.Permitted = caps
	}

	if err := mounts(spec, c, privileged); err != nil {
		return nil, err
	}
	if err := devices(spec, cfg.GetDevices(), privileged, c.Host); err != nil {
		return nil, err
	}
	if err := resources(spec, cfg.GetLinux().GetResources(), c.Host.MinOOMScoreAdj); err != nil {
		return nil, err
	}
	if err := namespaces(spec, sc.GetNamespaceOptions(), c.Pod); err != nil {
		return nil, err
	}
	if _, private := hasNamespace(spec, specs.UTSNamespace); !private {
		// The host's UTS namespace: its hostname is not ours to set.
		spec.Hostname = ""
	}
	if err := security(spec, sc, privileged, caps, c.Host); err != nil {
		return nil, err
	}
	spec.Linux.Sysctl = map[string]string{}
	for k, v := range c.Sandbox.GetLinux().GetSysctls() {
		spec.Linux.Sysctl[k] = v
	}
	cgroupsPath(spec, c.Pod.CgroupParent, c.ID, c.Host.CgroupDriver)

	for k, v := range cfg.GetAnnotations() {
		spec.Annotations[k] = v
	}
	spec.Annotations["io.kubernetes.cri.container-type"] = "container"
	spec.Annotations["io.kubernetes.cri.container-name"] = cfg.GetMetadata().GetName()
	spec.Annotations["io.kubernetes.cri.sandbox-name"] = c.Sandbox.GetMetadata().GetName()
	spec.Annotations["io.kubernetes.cri.sandbox-namespace"] = c.Sandbox.GetMetadata().GetNamespace()
	spec.Annotations["io.kubernetes.cri.sandbox-uid"] = c.Sandbox.GetMetadata().GetUid()
	spec.Annotations["io.kubernetes.cri.image-name"] = cfg.GetImage().GetImage()
	return spec, nil
}

func int64Ptr(v *runtimeapi.Int64Value) *int64 {
	if v == nil {
		return nil
	}
	x := v.GetValue()
	return &x
}

func uint32Ptr(v uint32) *uint32 { return &v }

func intersect(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	out := []string{}
	for _, x := range a {
		if in[x] {
			out = append(out, x)
		}
	}
	return out
}

// command merges the CRI command and args with the image's entrypoint and
// cmd the Kubernetes way: command replaces the entrypoint (and drops the
// image's cmd), args replace the cmd.
func command(cmd, args, entrypoint, imageCmd []string) ([]string, error) {
	var out []string
	switch {
	case len(cmd) > 0:
		out = append(append(out, cmd...), args...)
	case len(args) > 0:
		out = append(append(out, entrypoint...), args...)
	default:
		out = append(append(out, entrypoint...), imageCmd...)
	}
	if len(out) == 0 {
		return nil, fieldErr("config.command", "no command given and the image has neither entrypoint nor cmd")
	}
	return out, nil
}

// environment merges image and CRI variables (CRI wins), adds PATH and HOME
// when missing, and keeps the image's order.
func environment(image []string, envs []*runtimeapi.KeyValue, home string) ([]string, error) {
	var order []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, kv := range image {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	for i, kv := range envs {
		if kv.GetKey() == "" || strings.ContainsAny(kv.GetKey(), "=\x00") {
			return nil, fieldErr(fmt.Sprintf("config.envs[%d].key", i), "%q is not a valid variable name", kv.GetKey())
		}
		if bytes.IndexByte(kv.GetValue(), 0) >= 0 {
			return nil, fieldErr(fmt.Sprintf("config.envs[%d].value", i), "contains a NUL byte")
		}
		set(kv.GetKey(), string(kv.GetValue()))
	}
	if _, ok := vals["PATH"]; !ok {
		set("PATH", strings.TrimPrefix(defaultPath, "PATH="))
	}
	if _, ok := vals["HOME"]; !ok {
		if home == "" {
			home = "/"
		}
		set("HOME", home)
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vals[k])
	}
	return out, nil
}

func cgroupsPath(spec *specs.Spec, parent, id, driver string) {
	if driver == "systemd" {
		slice := parent
		if slice == "" {
			slice = "system.slice"
		}
		spec.Linux.CgroupsPath = slice + ":berth:" + id
		return
	}
	if parent == "" {
		parent = "/berth"
	}
	spec.Linux.CgroupsPath = filepath.Join(parent, id)
}

// cpusetRE is the kernel's list format for cpuset.cpus and cpuset.mems.
var cpusetRE = regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)

// resources translates CPU, memory, hugepages and unified settings.
func resources(spec *specs.Spec, r *runtimeapi.LinuxContainerResources, minOOM int) error {
	res := spec.Linux.Resources
	if r == nil {
		return nil
	}
	if r.GetCpuShares() < 0 {
		return fieldErr("config.linux.resources.cpu_shares", "%d is negative", r.GetCpuShares())
	}
	if r.GetCpuShares() > 0 {
		shares := uint64(r.GetCpuShares())
		res.CPU = ensureCPU(res.CPU)
		res.CPU.Shares = &shares
	}
	if r.GetCpuQuota() < 0 && r.GetCpuQuota() != -1 {
		return fieldErr("config.linux.resources.cpu_quota", "%d is negative", r.GetCpuQuota())
	}
	if r.GetCpuQuota() != 0 {
		q := r.GetCpuQuota()
		res.CPU = ensureCPU(res.CPU)
		res.CPU.Quota = &q
	}
	if r.GetCpuPeriod() < 0 {
		return fieldErr("config.linux.resources.cpu_period", "%d is negative", r.GetCpuPeriod())
	}
	if r.GetCpuPeriod() > 0 {
		p := uint64(r.GetCpuPeriod())
		res.CPU = ensureCPU(res.CPU)
		res.CPU.Period = &p
	}
	for field, v := range map[string]string{"cpuset_cpus": r.GetCpusetCpus(), "cpuset_mems": r.GetCpusetMems()} {
		if v != "" && (len(v) > 1024 || !cpusetRE.MatchString(v)) {
			if len(v) > 64 {
				v = v[:64] + "..."
			}
			return fieldErr("config.linux.resources."+field, "%q is not a CPU or node list such as 0-3,6", v)
		}
	}
	if r.GetCpusetCpus() != "" || r.GetCpusetMems() != "" {
		res.CPU = ensureCPU(res.CPU)
		res.CPU.Cpus, res.CPU.Mems = r.GetCpusetCpus(), r.GetCpusetMems()
	}
	if r.GetMemoryLimitInBytes() < 0 {
		return fieldErr("config.linux.resources.memory_limit_in_bytes", "%d is negative", r.GetMemoryLimitInBytes())
	}
	if r.GetMemoryLimitInBytes() > 0 {
		l := r.GetMemoryLimitInBytes()
		res.Memory = &specs.LinuxMemory{Limit: &l}
		if s := r.GetMemorySwapLimitInBytes(); s > 0 {
			if s < l {
				return fieldErr("config.linux.resources.memory_swap_limit_in_bytes", "%d is below the memory limit %d", s, l)
			}
			res.Memory.Swap = &s
		}
	}
	for i, h := range r.GetHugepageLimits() {
		if h.GetPageSize() == "" {
			return fieldErr(fmt.Sprintf("config.linux.resources.hugepage_limits[%d].page_size", i), "must not be empty")
		}
		res.HugepageLimits = append(res.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	if len(r.GetUnified()) > 0 {
		res.Unified = map[string]string{}
		for k, v := range r.GetUnified() {
			if strings.ContainsAny(k, "/\x00") || k == "" {
				return fieldErr("config.linux.resources.unified", "%q is not a cgroup v2 file name", k)
			}
			res.Unified[k] = v
		}
	}
	adj := int(r.GetOomScoreAdj())
	if adj < -1000 || adj > 1000 {
		return fieldErr("config.linux.resources.oom_score_adj", "%d is outside [-1000, 1000]", adj)
	}
	if adj < minOOM {
		// A negative oom_score_adj needs CAP_SYS_RESOURCE; clamp to what the
		// daemon may set, as containerd's restrict_oom_score_adj does.
		adj = minOOM
	}
	spec.Process.OOMScoreAdj = &adj
	return nil
}

func ensureCPU(c *specs.LinuxCPU) *specs.LinuxCPU {
	if c == nil {
		return &specs.LinuxCPU{}
	}
	return c
}

// namespaces joins the pod's namespaces as the CRI namespace options say.
func namespaces(spec *specs.Spec, opts *runtimeapi.NamespaceOption, pod Pod) error {
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	join := func(t specs.LinuxNamespaceType, mode runtimeapi.NamespaceMode, podPath, field string) error {
		switch mode {
		case runtimeapi.NamespaceMode_NODE:
			return nil
		case runtimeapi.NamespaceMode_POD:
			if podPath == "" {
				// The pod itself uses the host's namespace.
				return nil
			}
			ns = append(ns, specs.LinuxNamespace{Type: t, Path: podPath})
		case runtimeapi.NamespaceMode_CONTAINER:
			if t != specs.PIDNamespace {
				return fieldErr(field, "CONTAINER mode is only supported for the PID namespace")
			}
			ns = append(ns, specs.LinuxNamespace{Type: t})
		case runtimeapi.NamespaceMode_TARGET:
			if t != specs.PIDNamespace {
				return fieldErr(field, "TARGET mode is only supported for the PID namespace")
			}
			if pod.TargetPIDNS == "" {
				return fieldErr("config.linux.security_context.namespace_options.target_id", "the target container's PID namespace is unknown")
			}
			ns = append(ns, specs.LinuxNamespace{Type: t, Path: pod.TargetPIDNS})
		default:
			return fieldErr(field, "unknown namespace mode %v", mode)
		}
		return nil
	}
	base := "config.linux.security_context.namespace_options."
	if err := join(specs.NetworkNamespace, opts.GetNetwork(), pod.NetNS, base+"network"); err != nil {
		return err
	}
	if err := join(specs.IPCNamespace, opts.GetIpc(), pod.IPCNS, base+"ipc"); err != nil {
		return err
	}
	if err := join(specs.PIDNamespace, opts.GetPid(), pod.PIDNS, base+"pid"); err != nil {
		return err
	}
	// UTS follows the network namespace: host network means host UTS.
	utsMode := runtimeapi.NamespaceMode_POD
	if opts.GetNetwork() == runtimeapi.NamespaceMode_NODE {
		utsMode = runtimeapi.NamespaceMode_NODE
	}
	if err := join(specs.UTSNamespace, utsMode, pod.UTSNS, base+"network"); err != nil {
		return err
	}
	ns = append(ns, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	if opts.GetUsernsOptions() != nil && opts.GetUsernsOptions().GetMode() != runtimeapi.NamespaceMode_NODE {
		return fieldErr(base+"userns_options", "user namespaces are not supported by this runtime handler")
	}
	sort.SliceStable(ns, func(i, j int) bool { return ns[i].Type < ns[j].Type })
	spec.Linux.Namespaces = ns
	return nil
}

// security applies seccomp, AppArmor, SELinux, masked and read-only paths.
func security(spec *specs.Spec, sc *runtimeapi.LinuxContainerSecurityContext, privileged bool, caps []string, host Host) error {
	if !privileged {
		masked, ro := sc.GetMaskedPaths(), sc.GetReadonlyPaths()
		if masked == nil {
			masked = DefaultMaskedPaths
		}
		if ro == nil {
			ro = DefaultReadonlyPaths
		}
		for i, p := range append(append([]string{}, masked...), ro...) {
			if !filepath.IsAbs(p) {
				return fieldErr("config.linux.security_context.masked_paths", "path %d %q must be absolute", i, p)
			}
		}
		spec.Linux.MaskedPaths = append([]string{}, masked...)
		spec.Linux.ReadonlyPaths = append([]string{}, ro...)
	}
	prof := sc.GetSeccomp()
	if prof == nil && sc.GetSeccompProfilePath() != "" {
		prof = legacyProfile(sc.GetSeccompProfilePath())
	}
	switch {
	case privileged, prof == nil, prof.GetProfileType() == runtimeapi.SecurityProfile_Unconfined:
		// Unconfined: the CRI default when no profile is given.
	case prof.GetProfileType() == runtimeapi.SecurityProfile_RuntimeDefault:
		spec.Linux.Seccomp = defaultSeccomp(caps)
	case prof.GetProfileType() == runtimeapi.SecurityProfile_Localhost:
		s, err := localhostSeccomp(prof.GetLocalhostRef(), host.SeccompRoot)
		if err != nil {
			return fieldErr("config.linux.security_context.seccomp.localhost_ref", "%v", err)
		}
		spec.Linux.Seccomp = s
	default:
		return fieldErr("config.linux.security_context.seccomp.profile_type", "unknown profile type %v", prof.GetProfileType())
	}
	aa := sc.GetApparmor()
	if aa == nil && sc.GetApparmorProfile() != "" {
		aa = legacyProfile(sc.GetApparmorProfile())
	}
	if aa != nil && aa.GetProfileType() == runtimeapi.SecurityProfile_Localhost {
		if !host.AppArmor {
			return fieldErr("config.linux.security_context.apparmor", "AppArmor is not enabled on this node")
		}
		spec.Process.ApparmorProfile = strings.TrimPrefix(aa.GetLocalhostRef(), "localhost/")
	}
	if o := sc.GetSelinuxOptions(); o != nil && (o.GetType() != "" || o.GetLevel() != "") {
		// No SELinux on this node type: labels cannot be applied. Refuse
		// rather than run the container unlabelled.
		return fieldErr("config.linux.security_context.selinux_options", "SELinux is not enabled on this node")
	}
	return nil
}

// legacyProfile maps the deprecated string fields ("runtime/default",
// "unconfined", "localhost/<path>") to a SecurityProfile.
func legacyProfile(s string) *runtimeapi.SecurityProfile {
	switch {
	case s == "runtime/default" || s == "docker/default":
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	case s == "unconfined" || s == "":
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	default:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: s}
	}
}

func hasNamespace(spec *specs.Spec, t specs.LinuxNamespaceType) (string, bool) {
	for _, n := range spec.Linux.Namespaces {
		if n.Type == t {
			return n.Path, true
		}
	}
	return "", false
}

// Resources translates CRI resources alone, for UpdateContainerResources.
func Resources(r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error) {
	spec := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{Resources: &specs.LinuxResources{}}}
	if err := resources(spec, r, -1000); err != nil {
		return nil, err
	}
	return spec.Linux.Resources, nil
}
