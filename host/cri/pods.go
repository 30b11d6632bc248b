package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/host/ocispec"
	"github.com/berth-cri/berth/host/plugins"
	"github.com/berth-cri/berth/host/state"
	"github.com/berth-cri/berth/sdk"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

// keyedMutex serialises operations on one object ID.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func (k *keyedMutex) lock(id string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*sync.Mutex{}
	}
	l, ok := k.locks[id]
	if !ok {
		l = &sync.Mutex{}
		k.locks[id] = l
	}
	k.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// undo collects cleanup steps run in reverse when an operation fails, so a
// failed request leaves no partial state.
//
// Steps that call a plugin (addCall) are retried while the plugin is being
// restarted (it died, maybe in the very call that failed), within
// undoBudget. If one still fails, the record steps (addRecord: deleting the
// store record, which also frees the name) are skipped: the record stays in
// phase "creating" and Recover finishes the cleanup at the next start,
// rather than leaving namespaces, mounts or processes nobody knows of.
type undo struct {
	steps  []undoStep
	failed bool
}

type undoStep struct {
	local  func()
	call   func(context.Context) error
	record bool
}

// undoBudget bounds the retries of an undo's plugin calls (a plugin comes
// back in well under a second).
const undoBudget = 5 * time.Second

func (u *undo) add(f func())                          { u.steps = append(u.steps, undoStep{local: f}) }
func (u *undo) addRecord(f func())                    { u.steps = append(u.steps, undoStep{local: f, record: true}) }
func (u *undo) addCall(f func(context.Context) error) { u.steps = append(u.steps, undoStep{call: f}) }

func (u *undo) run(log *slog.Logger) {
	deadline := time.Now().Add(undoBudget)
	for i := len(u.steps) - 1; i >= 0; i-- {
		st := u.steps[i]
		switch {
		case st.record && u.failed:
			log.Error("cleanup of a failed request is incomplete; its record is kept for the next start to finish", "budget", undoBudget)
		case st.local != nil:
			st.local()
		default:
			// NotFound: nothing was made, nothing to undo.
			if err := retryUnavailable(deadline, st.call); err != nil && status.Code(err) != codes.NotFound {
				log.Warn("cleanup step of a failed request failed", "error", err)
				u.failed = true
			}
		}
	}
}

// retryUnavailable calls f until it succeeds, fails otherwise than with
// Unavailable, or the deadline passes.
func retryUnavailable(deadline time.Time, f func(context.Context) error) error {
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := f(ctx)
		cancel()
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// storeErr maps state errors to gRPC codes.
func storeErr(err error, what string) error {
	var taken *state.NameTakenError
	switch {
	case errors.As(err, &taken):
		return status.Errorf(codes.AlreadyExists, "%s name %q is reserved for %s", what, strings.TrimPrefix(taken.Name, what+"/"), taken.Holder)
	case errors.Is(err, state.ErrNotFound):
		return status.Errorf(codes.NotFound, "%v", err)
	case errors.Is(err, state.ErrAmbiguous):
		return status.Errorf(codes.InvalidArgument, "%v", err)
	}
	return status.Errorf(codes.Internal, "%s: %v", what, err)
}

func validatePodConfig(c *runtimeapi.PodSandboxConfig) error {
	if c == nil {
		return invalid("config", "must be set")
	}
	md := c.GetMetadata()
	for _, f := range []struct{ name, val string }{{"config.metadata.name", md.GetName()}, {"config.metadata.namespace", md.GetNamespace()}, {"config.metadata.uid", md.GetUid()}} {
		if f.val == "" {
			return invalid(f.name, "must not be empty")
		}
		if len(f.val) > 253 {
			return invalid(f.name, "is %d bytes long; at most 253", len(f.val))
		}
		if strings.ContainsAny(f.val, "/_\x00") && f.name != "config.metadata.uid" {
			return invalid(f.name, "%q may not contain '/', '_' or NUL", f.val)
		}
	}
	if len(c.GetHostname()) > 63 {
		return invalid("config.hostname", "is %d bytes long; at most 63", len(c.GetHostname()))
	}
	if d := c.GetLogDirectory(); d != "" && !filepath.IsAbs(d) {
		return invalid("config.log_directory", "%q must be absolute", d)
	}
	if err := validateAnnotations("config.annotations", c.GetAnnotations()); err != nil {
		return err
	}
	if err := validateAnnotations("config.labels", c.GetLabels()); err != nil {
		return err
	}
	if _, err := shmSize(c); err != nil {
		return err
	}
	for field, r := range map[string]*runtimeapi.LinuxContainerResources{"config.linux.resources": c.GetLinux().GetResources(), "config.linux.overhead": c.GetLinux().GetOverhead()} {
		if r == nil {
			continue
		}
		if _, err := ocispec.Resources(r); err != nil {
			if fe, ok := err.(*ocispec.FieldError); ok {
				return invalid(strings.Replace(fe.Field, "config.linux.resources", field, 1), "%s", fe.Msg)
			}
			return invalid(field, "%v", err)
		}
	}
	return validateSysctls(c)
}

// RunPodSandbox creates a pod: its namespaces (pinned, with a pod init for a
// pod PID namespace), /etc/hosts, /etc/resolv.conf, /etc/hostname and a
// sized /dev/shm, then its network.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	cfg := req.GetConfig()
	if err := validatePodConfig(cfg); err != nil {
		return nil, err
	}
	rt, rc, err := s.plugins.Runtime(req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	if err := rt.Require(sdk.CapSandbox); err != nil {
		return nil, err
	}
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE || nsOpts.GetPid() == runtimeapi.NamespaceMode_NODE || nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE {
		if err := rt.Require(sdk.CapHostNamespaces); err != nil {
			return nil, err
		}
	}
	id := newID()
	md := cfg.GetMetadata()
	raw, err := protojson.Marshal(cfg)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode config: %v", err)
	}
	sb := &state.Sandbox{
		ID: id, Name: fmt.Sprintf("%s_%s_%s_%d", md.GetName(), md.GetNamespace(), md.GetUid(), md.GetAttempt()),
		Config: raw, RuntimeHandler: rc.Handler, Phase: state.PhaseCreating, CreatedAt: nowNano(),
		Dir: filepath.Join(s.cfg.Host.RunRoot, "sandboxes", id), CgroupParent: cfg.GetLinux().GetCgroupParent(),
	}
	if sb.CgroupParent == "" {
		sb.CgroupParent = "/berth/pod-" + id[:12]
		if s.cfg.Host.CgroupDriver == "systemd" {
			sb.CgroupParent = "berth-pod" + id[:12] + ".slice"
		}
	}
	defer s.locks.lock(id)()
	if err := s.store.CreateSandbox(sb); err != nil {
		return nil, storeErr(err, "sandbox")
	}
	var u undo
	u.addRecord(func() { _ = s.store.DeleteSandbox(id) })
	ok := false
	defer func() {
		if !ok {
			u.run(s.log)
		}
	}()
	if err := os.MkdirAll(sb.Dir, 0o755); err != nil {
		return nil, status.Errorf(codes.Internal, "sandbox dir: %v", err)
	}
	u.add(func() { os.RemoveAll(sb.Dir) })
	if err := writePodFiles(sb.Dir, cfg); err != nil {
		return nil, err
	}
	if d := cfg.GetLogDirectory(); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, status.Errorf(codes.Internal, "log directory: %v", err)
		}
	}
	if nsOpts.GetIpc() != runtimeapi.NamespaceMode_NODE {
		shm := filepath.Join(sb.Dir, "shm")
		size, _ := shmSize(cfg) // validated above
		if err := os.MkdirAll(shm, 0o755); err != nil {
			return nil, status.Errorf(codes.Internal, "shm: %v", err)
		}
		if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("mode=1777,size=%d", size)); err != nil {
			return nil, status.Errorf(codes.Internal, "mount shm: %v", err)
		}
		u.add(func() { _ = unix.Unmount(shm, unix.MNT_DETACH) })
	}
	// The namespaces the pod needs of its own.
	podSpec := specs.Spec{Hostname: podHostname(cfg), Linux: &specs.Linux{CgroupsPath: sb.CgroupParent}}
	if nsOpts.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		podSpec.Linux.Namespaces = append(podSpec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace}, specs.LinuxNamespace{Type: specs.UTSNamespace})
	}
	if nsOpts.GetIpc() != runtimeapi.NamespaceMode_NODE {
		podSpec.Linux.Namespaces = append(podSpec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.IPCNamespace})
	}
	if nsOpts.GetPid() == runtimeapi.NamespaceMode_POD {
		podSpec.Linux.Namespaces = append(podSpec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	specJSON, _ := json.Marshal(podSpec)
	opts, err := runtimeOptions(rc.Handler, rc.Config)
	if err != nil {
		return nil, err
	}
	rtc := runtimev1.NewRuntimeClient(rt.Conn)
	// The runtime may make the pod's cgroup parent (the pod init joins it);
	// undone after the runtime's RemoveSandbox has ended the init.
	if s.ownsCgroup(sb, cfg) {
		u.add(func() { removeCgroup(sb.CgroupParent) })
	}
	// Undone even when CreateSandbox fails: the plugin may have died half
	// way through it, and finds what it made from the sandbox ID alone.
	var handle []byte
	u.addCall(func(ctx context.Context) error {
		_, err := rtc.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{SandboxId: id, Options: opts, Handle: handle})
		return err
	})
	created, err := rtc.CreateSandbox(ctx, &runtimev1.CreateSandboxRequest{SandboxId: id, Options: opts, SpecJson: specJSON, Annotations: cfg.GetAnnotations()})
	if err != nil {
		return nil, err
	}
	handle = created.GetHandle()
	sb.Namespaces, sb.Handle, sb.InitPID = created.GetNamespacePaths(), created.GetHandle(), int(created.GetInitPid())
	// Pod-level limits go on a cgroup parent Berth made (kubelet sizes its
	// own).
	if res := cfg.GetLinux().GetResources(); res != nil && s.ownsCgroup(sb, cfg) {
		if err := s.applyPodResources(ctx, sb, podResources(res, cfg.GetLinux().GetOverhead()), "config.linux.resources"); err != nil {
			return nil, err
		}
	}
	sb.Phase = state.PhaseReady
	if err := s.store.UpdateSandbox(sb); err != nil {
		return nil, storeErr(err, "sandbox")
	}
	ok = true
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func nowNano() int64 { return timeNow().UnixNano() }

// podHostname is the pod's hostname, or the node's when the pod names
// none, as CRI-O and containerd do.
func podHostname(cfg *runtimeapi.PodSandboxConfig) string {
	if h := cfg.GetHostname(); h != "" {
		return h
	}
	h, _ := os.Hostname()
	return h
}

// runtimeOptions encodes a runtime class's config for the runtime plugin.
func runtimeOptions(handler string, cfg map[string]any) (*runtimev1.RuntimeOptions, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "runtime class %q config: %v", handler, err)
	}
	if cfg == nil {
		b = []byte("{}")
	}
	return &runtimev1.RuntimeOptions{Handler: handler, ConfigJson: b}, nil
}

// writePodFiles writes the pod's hostname, hosts and resolv.conf.
func writePodFiles(dir string, cfg *runtimeapi.PodSandboxConfig) error {
	host := podHostname(cfg)
	files := map[string]string{
		"hostname": host + "\n",
		"hosts":    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
	}
	if dns := cfg.GetDnsConfig(); dns != nil {
		var b strings.Builder
		for _, s := range dns.GetServers() {
			fmt.Fprintf(&b, "nameserver %s\n", s)
		}
		if len(dns.GetSearches()) > 0 {
			fmt.Fprintf(&b, "search %s\n", strings.Join(dns.GetSearches(), " "))
		}
		if len(dns.GetOptions()) > 0 {
			fmt.Fprintf(&b, "options %s\n", strings.Join(dns.GetOptions(), " "))
		}
		files["resolv.conf"] = b.String()
	} else if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		files["resolv.conf"] = string(b)
	} else {
		files["resolv.conf"] = ""
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return status.Errorf(codes.Internal, "write %s: %v", name, err)
		}
	}
	return nil
}

// sandbox looks a pod up by ID or unique ID prefix.
func (s *Server) sandbox(id string) (*state.Sandbox, *runtimeapi.PodSandboxConfig, error) {
	if id == "" {
		return nil, nil, invalid("pod_sandbox_id", "must not be empty")
	}
	sb, err := s.store.Sandbox(id)
	if err != nil {
		return nil, nil, storeErr(err, "sandbox")
	}
	var cfg runtimeapi.PodSandboxConfig
	if err := protojson.Unmarshal(sb.Config, &cfg); err != nil {
		return nil, nil, status.Errorf(codes.Internal, "decode sandbox %s: %v", sb.ID, err)
	}
	return sb, &cfg, nil
}

func (s *Server) runtimeOf(sb *state.Sandbox) (runtimev1.RuntimeClient, *runtimev1.RuntimeOptions, *plugins.Instance, error) {
	rt, rc, err := s.plugins.Runtime(sb.RuntimeHandler)
	if err != nil {
		return nil, nil, nil, err
	}
	opts, err := runtimeOptions(rc.Handler, rc.Config)
	if err != nil {
		return nil, nil, nil, err
	}
	return runtimev1.NewRuntimeClient(rt.Conn), opts, rt, nil
}

// containerRuntime is the runtime plugin (client, class options, instance)
// of a container's pod.
func (s *Server) containerRuntime(c *state.Container) (runtimev1.RuntimeClient, *runtimev1.RuntimeOptions, *plugins.Instance, error) {
	sb, _, err := s.sandbox(c.SandboxID)
	if err != nil {
		return nil, nil, nil, err
	}
	return s.runtimeOf(sb)
}

// StopPodSandbox stops every container of the pod and the pod itself. A
// missing pod is not an error (kubelet retries).
func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	sb, _, err := s.sandbox(req.GetPodSandboxId())
	if status.Code(err) == codes.NotFound {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer s.locks.lock(sb.ID)()
	if err := s.stopSandbox(ctx, sb); err != nil {
		return nil, err
	}
	if cs, err := s.store.Containers(sb.ID); err == nil {
		for _, c := range cs {
			if c.Phase == state.PhaseExited {
				s.releaseRuntime(c)
			}
		}
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (s *Server) stopSandbox(ctx context.Context, sb *state.Sandbox) error {
	cs, err := s.store.Containers(sb.ID)
	if err != nil {
		return status.Errorf(codes.Internal, "%v", err)
	}
	// Every container at once, so a pod's stop takes one kill budget, not
	// one per container.
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.stopContainer(ctx, c, 0)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		// A process that outlives SIGKILL (stuck in the kernel) cannot be
		// helped by failing: the pod's PID namespace goes with its init
		// below, and its exit is recorded whenever it comes.
		if status.Code(err) == codes.DeadlineExceeded {
			s.log.Warn("container did not exit after SIGKILL; stopping its pod anyway", "pod", sb.ID, "container", cs[i].ID)
			continue
		}
		if err != nil {
			return err
		}
	}
	rtc, opts, _, err := s.runtimeOf(sb)
	if err != nil {
		return err
	}
	if _, err := rtc.StopSandbox(ctx, &runtimev1.StopSandboxRequest{SandboxId: sb.ID, Options: opts, Handle: sb.Handle}); err != nil {
		return err
	}
	if sb.Phase != state.PhaseNotReady {
		sb.Phase = state.PhaseNotReady
		if err := s.store.UpdateSandbox(sb); err != nil {
			return storeErr(err, "sandbox")
		}
	}
	return nil
}

// RemovePodSandbox removes the pod and all its containers; a missing pod is
// not an error.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	sb, _, err := s.sandbox(req.GetPodSandboxId())
	if status.Code(err) == codes.NotFound {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer s.locks.lock(sb.ID)()
	if err := s.removeSandbox(ctx, sb); err != nil {
		return nil, err
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (s *Server) removeSandbox(ctx context.Context, sb *state.Sandbox) error {
	if err := s.stopSandbox(ctx, sb); err != nil {
		return err
	}
	cs, err := s.store.Containers(sb.ID)
	if err != nil {
		return status.Errorf(codes.Internal, "%v", err)
	}
	for _, c := range cs {
		if err := s.removeContainer(ctx, c); err != nil {
			return err
		}
	}
	rtc, opts, _, err := s.runtimeOf(sb)
	if err != nil {
		return err
	}
	if len(sb.Handle) > 0 {
		if _, err := rtc.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{SandboxId: sb.ID, Options: opts, Handle: sb.Handle}); err != nil {
			return err
		}
	}
	shm := filepath.Join(sb.Dir, "shm")
	if err := unix.Unmount(shm, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return status.Errorf(codes.Internal, "unmount %s: %v", shm, err)
	}
	if err := os.RemoveAll(sb.Dir); err != nil {
		return status.Errorf(codes.Internal, "remove %s: %v", sb.Dir, err)
	}
	removeCgroup(sb.CgroupParent)
	if err := s.store.DeleteSandbox(sb.ID); err != nil {
		return storeErr(err, "sandbox")
	}
	return nil
}

// removeCgroup removes a pod's cgroupfs parent in every hierarchy (runc
// removes the containers' leaves, not their parent). Best effort: a
// non-empty cgroup stays.
//
// A parent kubelet passed is removed too when it is empty (kubelet, which
// removes its pod cgroups itself, takes a missing one in its stride; one
// still in use, say by the pod's next sandbox, is busy and stays).
func removeCgroup(parent string) {
	if parent == "" || !strings.HasPrefix(parent, "/") {
		return
	}
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return
	}
	dirs := []string{parent}
	if filepath.Dir(parent) == "/berth" {
		// Berth's parent of pod cgroups goes with its last pod.
		dirs = append(dirs, "/berth")
	}
	for _, d := range dirs {
		for _, e := range entries {
			rmdirCgroup(filepath.Join("/sys/fs/cgroup", e.Name(), d), d == parent)
		}
		rmdirCgroup(filepath.Join("/sys/fs/cgroup", d), d == parent)
	}
}

// rmdirCgroup removes an empty cgroup directory. With wait, it gives a
// process that was just killed (the pod init) up to 500 ms to be reaped and
// leave; a directory busy with child cgroups is left at once.
func rmdirCgroup(dir string, wait bool) {
	for i := 0; ; i++ {
		if err := unix.Rmdir(dir); err != unix.EBUSY || !wait || i == 50 {
			return
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sandboxState(sb *state.Sandbox) runtimeapi.PodSandboxState {
	if sb.Phase == state.PhaseReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

// PodSandboxStatus reports a pod.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	sb, cfg, err := s.sandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	s.checkSandboxAlive(ctx, sb)
	st := &runtimeapi.PodSandboxStatus{
		Id: sb.ID, Metadata: cfg.GetMetadata(), State: sandboxState(sb), CreatedAt: sb.CreatedAt,
		Network: &runtimeapi.PodSandboxNetworkStatus{},
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), RuntimeHandler: sb.RuntimeHandler,
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: st}
	if req.GetVerbose() {
		b, _ := json.Marshal(map[string]any{"namespaces": sb.Namespaces, "init_pid": sb.InitPID, "dir": sb.Dir, "cgroup_parent": sb.CgroupParent})
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

// checkSandboxAlive asks the runtime whether a ready pod can still run
// containers; one that cannot (its init or VM died) becomes NotReady, so
// kubelet replaces it instead of restarting containers into it forever.
func (s *Server) checkSandboxAlive(ctx context.Context, sb *state.Sandbox) {
	if sb.Phase != state.PhaseReady {
		return
	}
	rtc, opts, rt, err := s.runtimeOf(sb)
	if err != nil || rt.Require(sdk.CapSandboxStatus) != nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := rtc.SandboxStatus(cctx, &runtimev1.SandboxStatusRequest{SandboxId: sb.ID, Options: opts, Handle: sb.Handle})
	if err != nil || st.GetReady() {
		return
	}
	defer s.locks.lock(sb.ID)()
	cur, err := s.store.Sandbox(sb.ID)
	if err != nil || cur.Phase != state.PhaseReady {
		return
	}
	cur.Phase = state.PhaseNotReady
	if err := s.store.UpdateSandbox(cur); err != nil {
		return
	}
	sb.Phase = cur.Phase
	s.log.Warn("pod sandbox is no longer ready", "pod", sb.ID, "reason", st.GetReason(), "message", st.GetMessage())
}

// ListPodSandbox lists pods matching the filter.
func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	all, err := s.store.Sandboxes()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	f := req.GetFilter()
	var out []*runtimeapi.PodSandbox
	for _, sb := range all {
		if sb.Phase == state.PhaseCreating {
			continue
		}
		var cfg runtimeapi.PodSandboxConfig
		if err := protojson.Unmarshal(sb.Config, &cfg); err != nil {
			continue
		}
		if f.GetId() != "" && !strings.HasPrefix(sb.ID, f.GetId()) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != sandboxState(sb) {
			continue
		}
		if !labelsMatch(cfg.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		out = append(out, &runtimeapi.PodSandbox{Id: sb.ID, Metadata: cfg.GetMetadata(), State: sandboxState(sb), CreatedAt: sb.CreatedAt,
			Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), RuntimeHandler: sb.RuntimeHandler})
	}
	return &runtimeapi.ListPodSandboxResponse{Items: out}, nil
}

func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
