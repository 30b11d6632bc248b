package cri

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/host/ocispec"
	"github.com/berth-cri/berth/host/state"
	"github.com/berth-cri/berth/sdk"
	monitorv1 "github.com/berth-cri/berth/sdk/proto/monitor/v1"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
	storagev1 "github.com/berth-cri/berth/sdk/proto/storage/v1"
)

var timeNow = time.Now

func (s *Server) monitor() (monitorv1.MonitorClient, error) {
	inst, err := s.plugins.Monitor()
	if err != nil {
		return nil, err
	}
	if err := inst.Require(sdk.CapWatch); err != nil {
		return nil, err
	}
	return monitorv1.NewMonitorClient(inst.Conn), nil
}

func (s *Server) rootfs() (storagev1.StorageClient, error) {
	inst, err := s.plugins.Storage()
	if err != nil {
		return nil, err
	}
	if err := inst.Require(sdk.CapRootfs); err != nil {
		return nil, err
	}
	return storagev1.NewStorageClient(inst.Conn), nil
}

// logPath joins the pod's log directory and the container's log path, which
// must stay inside the directory.
func logPath(dir, rel string) (string, error) {
	if rel == "" {
		return "", nil
	}
	if dir == "" {
		return "", invalid("config.log_path", "set, but the pod has no log_directory")
	}
	if filepath.IsAbs(rel) {
		return "", invalid("config.log_path", "%q must be relative to the pod's log_directory", rel)
	}
	p := filepath.Join(dir, rel)
	if r, err := filepath.Rel(dir, p); err != nil || r == ".." || strings.HasPrefix(r, "../") {
		return "", invalid("config.log_path", "%q leaves the pod's log_directory", rel)
	}
	return p, nil
}

// readInRoot reads a file of a container's root filesystem without
// following symlinks out of it.
func readInRoot(root, path string) string {
	dirfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat2(dirfd, strings.TrimPrefix(path, "/"), &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return ""
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 4<<20))
	return string(b)
}

// hostCaps lists the capabilities this process holds (its bounding set).
func hostCaps() []string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return ocispec.DefaultCapabilities
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapBnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				break
			}
			var out []string
			for i, c := range ocispec.AllCapabilities {
				if mask&(1<<uint(i)) != 0 {
					out = append(out, c)
				}
			}
			return out
		}
	}
	return ocispec.DefaultCapabilities
}

// minOOMScoreAdj is the lowest oom_score_adj this process may give: any
// with CAP_SYS_RESOURCE, else its own.
func minOOMScoreAdj(caps []string) int {
	for _, c := range caps {
		if c == "CAP_SYS_RESOURCE" {
			return -1000
		}
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func statDevice(path string) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return specs.LinuxDevice{}, err
	}
	typ := ""
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, fmt.Errorf("%s is not a device", path)
	}
	mode := os.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{Type: typ, Major: int64(unix.Major(uint64(st.Rdev))), Minor: int64(unix.Minor(uint64(st.Rdev))), FileMode: &mode, UID: &uid, GID: &gid}, nil
}

// CreateContainer creates a container in a pod: its root filesystem, its
// OCI bundle, and the container itself, created by the monitor running the
// runtime's create command.
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	if cfg == nil {
		return nil, invalid("config", "must be set")
	}
	if cfg.GetMetadata().GetName() == "" {
		return nil, invalid("config.metadata.name", "must not be empty")
	}
	if strings.ContainsAny(cfg.GetMetadata().GetName(), "/_\x00") {
		return nil, invalid("config.metadata.name", "%q may not contain '/', '_' or NUL", cfg.GetMetadata().GetName())
	}
	if cfg.GetImage().GetImage() == "" {
		return nil, invalid("config.image.image", "must not be empty")
	}
	if err := validateAnnotations("config.annotations", cfg.GetAnnotations()); err != nil {
		return nil, err
	}
	sb, podCfg, err := s.sandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if sb.Phase != state.PhaseReady {
		return nil, status.Errorf(codes.FailedPrecondition, "pod sandbox %s is not ready", sb.ID)
	}
	logFile, err := logPath(podCfg.GetLogDirectory(), cfg.GetLogPath())
	if err != nil {
		return nil, err
	}
	rtc, opts, rt, err := s.runtimeOf(sb)
	if err != nil {
		return nil, err
	}
	if err := rt.Require(sdk.CapContainers); err != nil {
		return nil, err
	}
	mon, err := s.monitor()
	if err != nil {
		return nil, err
	}
	st, err := s.rootfs()
	if err != nil {
		return nil, err
	}
	img, err := st.ImageStatus(ctx, &storagev1.ImageStatusRequest{Image: cfg.GetImage().GetImage()})
	if err != nil {
		return nil, withRef(err, cfg.GetImage().GetImage())
	}
	if img.GetImage() == nil {
		return nil, status.Errorf(codes.NotFound, "image %q is not present", cfg.GetImage().GetImage())
	}
	var imgCfg imgspecv1.Image
	if len(img.GetImage().GetConfigJson()) > 0 {
		if err := json.Unmarshal(img.GetImage().GetConfigJson(), &imgCfg); err != nil {
			return nil, status.Errorf(codes.Internal, "image config: %v", err)
		}
	}

	id := newID()
	md, pmd := cfg.GetMetadata(), podCfg.GetMetadata()
	raw, err := protojson.Marshal(cfg)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode config: %v", err)
	}
	dir := filepath.Join(s.cfg.Host.RunRoot, "containers", id)
	c := &state.Container{
		ID: id, SandboxID: sb.ID, Config: raw, Phase: state.PhaseCreating, CreatedAt: nowNano(),
		Name:     fmt.Sprintf("%s_%s_%s_%s_%d", md.GetName(), pmd.GetName(), pmd.GetNamespace(), pmd.GetUid(), md.GetAttempt()),
		ImageRef: cfg.GetImage().GetImage(), ImageID: img.GetImage().GetId(), LogPath: logFile,
		Bundle:     filepath.Join(dir, "bundle"),
		StopSignal: int(stopSignal(cfg.GetStopSignal(), imgCfg.Config.StopSignal)),
	}
	defer s.locks.lock(id)()
	if err := s.store.CreateContainer(c); err != nil {
		return nil, storeErr(err, "container")
	}
	var u undo
	u.addRecord(func() { _ = s.store.DeleteContainer(id) })
	ok := false
	defer func() {
		if !ok {
			u.run(s.log)
		}
	}()
	// Undone even when CreateRootfs fails (the plugin may have died in it).
	u.addCall(func(ctx context.Context) error {
		_, err := st.RemoveRootfs(ctx, &storagev1.RemoveRootfsRequest{ContainerId: id})
		return err
	})
	if _, err := st.CreateRootfs(ctx, &storagev1.CreateRootfsRequest{ContainerId: id, Image: img.GetImage().GetId(), Name: c.Name}); err != nil {
		return nil, err
	}
	mnt, err := st.MountRootfs(ctx, &storagev1.MountRootfsRequest{ContainerId: id})
	if err != nil {
		return nil, err
	}
	caps := hostCaps()
	nsPath := func(t string) string { return sb.Namespaces[t] }
	spec, err := ocispec.Build(ocispec.Container{
		ID: id, Config: cfg, Sandbox: podCfg, Image: imgCfg.Config, Rootfs: mnt.GetPath(),
		Passwd: readInRoot(mnt.GetPath(), "/etc/passwd"), Group: readInRoot(mnt.GetPath(), "/etc/group"),
		Pod: ocispec.Pod{NetNS: nsPath("net"), IPCNS: nsPath("ipc"), UTSNS: nsPath("uts"), PIDNS: nsPath("pid"),
			CgroupParent: sb.CgroupParent, ShmPath: s.shmPath(sb, podCfg),
			HostsPath: filepath.Join(sb.Dir, "hosts"), ResolvPath: filepath.Join(sb.Dir, "resolv.conf"), HostnamePath: filepath.Join(sb.Dir, "hostname"),
			Hostname: podHostname(podCfg), TargetPIDNS: s.targetPIDNS(cfg)},
		Host: ocispec.Host{Capabilities: caps, MinOOMScoreAdj: minOOMScoreAdj(caps), CgroupDriver: s.cfg.Host.CgroupDriver, StatDevice: statDevice,
			RecursiveReadOnly: s.handlerFeatures(ctx, sb.RuntimeHandler).GetRecursiveReadOnlyMounts()},
	})
	if err != nil {
		if fe, isField := err.(*ocispec.FieldError); isField {
			return nil, invalid(fe.Field, "%s", fe.Msg)
		}
		return nil, status.Errorf(codes.Internal, "build spec: %v", err)
	}
	if err := os.MkdirAll(c.Bundle, 0o700); err != nil {
		return nil, status.Errorf(codes.Internal, "bundle: %v", err)
	}
	u.add(func() { os.RemoveAll(dir) })
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode spec: %v", err)
	}
	if err := os.WriteFile(filepath.Join(c.Bundle, "config.json"), specJSON, 0o600); err != nil {
		return nil, status.Errorf(codes.Internal, "write spec: %v", err)
	}
	supDir := filepath.Join(dir, "monitor")
	pidFile := filepath.Join(supDir, "init.pid")
	cc, err := rtc.CreateCommand(ctx, &runtimev1.CreateCommandRequest{ContainerId: id, SandboxId: sb.ID, Options: opts, Bundle: c.Bundle, Terminal: cfg.GetTty(), PidFile: pidFile})
	if err != nil {
		return nil, err
	}
	// Undone in this order: the supervisor first (it may still be running
	// the create), then whatever the runtime made.
	u.addCall(func(ctx context.Context) error {
		_, err := rtc.Delete(ctx, &runtimev1.DeleteRequest{ContainerId: id, Options: opts, Force: true})
		return err
	})
	u.addCall(func(ctx context.Context) error {
		_, err := mon.Forget(ctx, &monitorv1.ForgetRequest{ContainerId: id})
		return err
	})
	w, err := mon.Watch(ctx, &monitorv1.WatchRequest{ContainerId: id, SandboxId: sb.ID, StdioDir: supDir, LogPath: logFile,
		Terminal: cfg.GetTty(), Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(), CreateArgv: cc.GetArgv(), CreateEnv: cc.GetEnv(), PidFile: pidFile})
	if err != nil {
		return nil, err
	}
	c.PID, c.Phase = int(w.GetPid()), state.PhaseCreated
	if err := s.store.UpdateContainer(c); err != nil {
		return nil, storeErr(err, "container")
	}
	ok = true
	s.emit(ctx, id, sb.ID, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

func (s *Server) shmPath(sb *state.Sandbox, cfg *runtimeapi.PodSandboxConfig) string {
	if cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc() == runtimeapi.NamespaceMode_NODE {
		return "/dev/shm"
	}
	return filepath.Join(sb.Dir, "shm")
}

// targetPIDNS is the PID namespace of a NamespaceMode_TARGET container's target.
func (s *Server) targetPIDNS(cfg *runtimeapi.ContainerConfig) string {
	t := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetTargetId()
	if t == "" {
		return ""
	}
	c, err := s.store.Container(t)
	if err != nil || c.PID == 0 {
		return ""
	}
	return fmt.Sprintf("/proc/%d/ns/pid", c.PID)
}

// container looks a container up and refreshes its state from the monitor.
func (s *Server) container(ctx context.Context, id string) (*state.Container, *runtimeapi.ContainerConfig, error) {
	if id == "" {
		return nil, nil, invalid("container_id", "must not be empty")
	}
	c, err := s.store.Container(id)
	if err != nil {
		return nil, nil, storeErr(err, "container")
	}
	var cfg runtimeapi.ContainerConfig
	if err := protojson.Unmarshal(c.Config, &cfg); err != nil {
		return nil, nil, status.Errorf(codes.Internal, "decode container %s: %v", c.ID, err)
	}
	s.refresh(ctx, c)
	return c, &cfg, nil
}

// refresh records an exit the monitor saw.
func (s *Server) refresh(ctx context.Context, c *state.Container) {
	if c.Phase != state.PhaseCreated && c.Phase != state.PhaseRunning {
		return
	}
	mon, err := s.monitor()
	if err != nil {
		return
	}
	st, err := mon.Status(ctx, &monitorv1.StatusRequest{ContainerId: c.ID})
	if err != nil || !st.GetExited() {
		return
	}
	c.Phase, c.ExitCode, c.FinishedAt = state.PhaseExited, st.GetExitCode(), st.GetExitedAtUnixNano()
	switch {
	case st.GetOomKilled():
		c.Reason = "OOMKilled"
	case st.GetExitCode() == 0:
		c.Reason = "Completed"
	case st.GetExitCode() == -1:
		c.Reason, c.Message = "Error", "the container's monitor died; its exit code is unknown"
	default:
		c.Reason = "Error"
	}
	_ = s.store.UpdateContainer(c)
}

// StartContainer starts a created container.
func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	c, _, err := s.container(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	defer s.locks.lock(c.ID)()
	if c.Phase != state.PhaseCreated {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is %s, not created", c.ID, c.Phase)
	}
	rtc, opts, _, err := s.containerRuntime(c)
	if err != nil {
		return nil, err
	}
	if _, err := rtc.Start(ctx, &runtimev1.StartRequest{ContainerId: c.ID, Options: opts}); err != nil {
		return nil, err
	}
	c.Phase, c.StartedAt = state.PhaseRunning, nowNano()
	if err := s.store.UpdateContainer(c); err != nil {
		return nil, storeErr(err, "container")
	}
	s.emit(ctx, c.ID, c.SandboxID, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	return &runtimeapi.StartContainerResponse{}, nil
}

// StopContainer stops a container: its stop signal, then SIGKILL after the
// timeout. A missing or stopped container is not an error.
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	c, _, err := s.container(ctx, req.GetContainerId())
	if status.Code(err) == codes.NotFound {
		return &runtimeapi.StopContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer s.locks.lock(c.ID)()
	if err := s.stopContainer(ctx, c, req.GetTimeout()); err != nil {
		return nil, err
	}
	s.releaseRuntime(c)
	return &runtimeapi.StopContainerResponse{}, nil
}

// Stop budgets: a hung runtime or process must not hold StopContainer or
// StopPodSandbox much past the caller's timeout (the pod never sticks in
// Terminating).
const (
	// runtimeSignalTimeout bounds one Kill call to the runtime plugin.
	runtimeSignalTimeout = 2 * time.Second
	// killGrace is how long an exit may take to show after SIGKILL.
	killGrace = 5 * time.Second
)

// stopContainer sends the stop signal, waits up to timeout seconds, then
// SIGKILLs every process of the container and waits killGrace. When the
// runtime does not answer a kill in time, the container's init is killed
// directly. It returns within about timeout + runtimeSignalTimeout +
// killGrace whatever the runtime or the process does.
func (s *Server) stopContainer(ctx context.Context, c *state.Container, timeout int64) error {
	s.refresh(ctx, c)
	if c.Phase != state.PhaseRunning && c.Phase != state.PhaseCreated {
		return nil
	}
	rtc, opts, _, err := s.containerRuntime(c)
	if err != nil {
		return err
	}
	signal := func(sig syscall.Signal, all bool) error {
		kctx, cancel := context.WithTimeout(ctx, runtimeSignalTimeout)
		defer cancel()
		_, err := rtc.Kill(kctx, &runtimev1.KillRequest{ContainerId: c.ID, Options: opts, Signal: int32(sig), All: all})
		return err
	}
	sig := syscall.Signal(c.StopSignal)
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	if timeout > 0 && c.Phase == state.PhaseRunning {
		deadline := time.Now().Add(time.Duration(timeout) * time.Second)
		if err := signal(sig, false); err != nil {
			s.log.Warn("stop signal failed; escalating to SIGKILL", "container", c.ID, "signal", sig, "err", err)
		} else if s.waitExit(ctx, c, time.Until(deadline)) {
			return nil
		}
	}
	if err := signal(syscall.SIGKILL, true); err != nil {
		s.log.Warn("runtime did not kill the container; killing its init directly", "container", c.ID, "pid", c.PID, "err", err)
		killSupervisedInit(c.PID)
	}
	if !s.waitExit(ctx, c, killGrace) {
		return status.Errorf(codes.DeadlineExceeded, "container %s did not exit within %v of SIGKILL", c.ID, killGrace)
	}
	return nil
}

// releaseRuntime has the runtime forget an exited container in the
// background (runc delete: its state and cgroup), off the path of
// RemoveContainer and RemovePodSandbox, which then find nothing left to do
// there. Stops that are part of a removal delete in line instead. The exit status is the monitor's, so nothing is lost.
func (s *Server) releaseRuntime(c *state.Container) {
	rtc, opts, _, err := s.containerRuntime(c)
	if err != nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := rtc.Delete(ctx, &runtimev1.DeleteRequest{ContainerId: c.ID, Options: opts, Force: true}); err != nil {
			s.log.Debug("releasing an exited container from the runtime", "container", c.ID, "error", err)
		}
	}()
}

// killSupervisedInit SIGKILLs pid if it still is a container init under a
// Berth monitor (its parent runs as "berth-conmon"), so that a recycled PID
// is never hit.
func killSupervisedInit(pid int) {
	if pid <= 1 {
		return
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return
	}
	cmdline, err := os.ReadFile("/proc/" + f[1] + "/cmdline")
	if err != nil {
		return
	}
	if args := strings.Split(string(cmdline), "\x00"); len(args) > 1 && args[1] == "berth-conmon" {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// waitExit polls the monitor until the container exited or d passed: every
// 2 ms at first (a killed process is usually gone in a few), backing off to
// 20 ms.
func (s *Server) waitExit(ctx context.Context, c *state.Container, d time.Duration) bool {
	deadline := time.Now().Add(d)
	pause := 2 * time.Millisecond
	for {
		s.refresh(ctx, c)
		if c.Phase == state.PhaseExited {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 20*time.Millisecond)
	}
}

// stopSignal resolves a container's stop signal: the CRI's, else the
// image's (STOPSIGNAL), else SIGTERM.
func stopSignal(cri runtimeapi.Signal, image string) syscall.Signal {
	if cri != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return syscall.Signal(int(cri))
	}
	if image != "" {
		if n, err := strconv.Atoi(image); err == nil && n > 0 && n < 65 {
			return syscall.Signal(n)
		}
		if sig := unix.SignalNum(strings.ToUpper(image)); sig != 0 {
			return sig
		}
		if sig := unix.SignalNum("SIG" + strings.ToUpper(image)); sig != 0 {
			return sig
		}
	}
	return syscall.SIGTERM
}

// RemoveContainer removes a container (killing it if it runs); a missing
// container is not an error.
func (s *Server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	c, _, err := s.container(ctx, req.GetContainerId())
	if status.Code(err) == codes.NotFound {
		return &runtimeapi.RemoveContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer s.locks.lock(c.ID)()
	if err := s.removeContainer(ctx, c); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (s *Server) removeContainer(ctx context.Context, c *state.Container) error {
	if err := s.stopContainer(ctx, c, 0); err != nil {
		return err
	}
	rtc, opts, _, err := s.containerRuntime(c)
	if err != nil {
		return err
	}
	if _, err := rtc.Delete(ctx, &runtimev1.DeleteRequest{ContainerId: c.ID, Options: opts, Force: true}); err != nil {
		return err
	}
	if mon, err := s.monitor(); err == nil {
		if _, err := mon.Forget(ctx, &monitorv1.ForgetRequest{ContainerId: c.ID}); err != nil {
			return err
		}
	}
	st, err := s.rootfs()
	if err != nil {
		return err
	}
	if _, err := st.RemoveRootfs(ctx, &storagev1.RemoveRootfsRequest{ContainerId: c.ID}); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Dir(c.Bundle)); err != nil {
		return status.Errorf(codes.Internal, "remove %s: %v", c.Bundle, err)
	}
	if err := s.store.DeleteContainer(c.ID); err != nil {
		return storeErr(err, "container")
	}
	s.emit(ctx, c.ID, c.SandboxID, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}

func containerState(c *state.Container) runtimeapi.ContainerState {
	switch c.Phase {
	case state.PhaseCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case state.PhaseRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case state.PhaseExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

// ContainerStatus reports a container.
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	c, cfg, err := s.container(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st := &runtimeapi.ContainerStatus{
		Id: c.ID, Metadata: cfg.GetMetadata(), State: containerState(c), CreatedAt: c.CreatedAt,
		StartedAt: c.StartedAt, FinishedAt: c.FinishedAt, ExitCode: c.ExitCode,
		Image: cfg.GetImage(), ImageRef: c.ImageID, ImageId: c.ImageID, Reason: c.Reason, Message: c.Message,
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), Mounts: cfg.GetMounts(), LogPath: c.LogPath,
		Resources: &runtimeapi.ContainerResources{Linux: cfg.GetLinux().GetResources()},
	}
	st.User = containerUser(c)
	resp := &runtimeapi.ContainerStatusResponse{Status: st}
	if req.GetVerbose() {
		b, _ := json.Marshal(map[string]any{"pid": c.PID, "sandboxID": c.SandboxID, "bundle": c.Bundle})
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

// listed is a container record with its decoded CRI config.
type listed struct {
	c   *state.Container
	cfg *runtimeapi.ContainerConfig
}

// matchingContainers returns the created containers whose ID and pod ID
// start with the given prefixes and whose labels match, with their state
// refreshed from the monitor.
func (s *Server) matchingContainers(ctx context.Context, idPrefix, podPrefix string, selector map[string]string) ([]listed, error) {
	all, err := s.store.Containers("")
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	var out []listed
	for _, c := range all {
		if c.Phase == state.PhaseCreating || !strings.HasPrefix(c.ID, idPrefix) || !strings.HasPrefix(c.SandboxID, podPrefix) {
			continue
		}
		var cfg runtimeapi.ContainerConfig
		if err := protojson.Unmarshal(c.Config, &cfg); err != nil || !labelsMatch(cfg.GetLabels(), selector) {
			continue
		}
		s.refresh(ctx, c)
		out = append(out, listed{c, &cfg})
	}
	return out, nil
}

// ListContainers lists containers matching the filter.
func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f := req.GetFilter()
	cs, err := s.matchingContainers(ctx, f.GetId(), f.GetPodSandboxId(), f.GetLabelSelector())
	if err != nil {
		return nil, err
	}
	var out []*runtimeapi.Container
	for _, l := range cs {
		c, cfg := l.c, l.cfg
		if f.GetState() != nil && f.GetState().GetState() != containerState(c) {
			continue
		}
		out = append(out, &runtimeapi.Container{Id: c.ID, PodSandboxId: c.SandboxID, Metadata: cfg.GetMetadata(), Image: cfg.GetImage(),
			ImageRef: c.ImageID, ImageId: c.ImageID, State: containerState(c), CreatedAt: c.CreatedAt, Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations()})
	}
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

// ReopenContainerLog asks the container's supervisor to reopen its log.
func (s *Server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	c, _, err := s.container(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.Phase != state.PhaseRunning {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is not running", c.ID)
	}
	mon, err := s.monitor()
	if err != nil {
		return nil, err
	}
	if _, err := mon.ReopenLog(ctx, &monitorv1.ReopenLogRequest{ContainerId: c.ID}); err != nil {
		return nil, err
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}

// containerUser is the identity the container's process runs as, from its
// OCI spec (the resolved user, with the image's and the pod's groups).
func containerUser(c *state.Container) *runtimeapi.ContainerUser {
	b, err := os.ReadFile(filepath.Join(c.Bundle, "config.json"))
	if err != nil {
		return nil
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil || spec.Process == nil {
		return nil
	}
	u := spec.Process.User
	groups := []int64{int64(u.GID)}
	for _, g := range u.AdditionalGids {
		if g != u.GID {
			groups = append(groups, int64(g))
		}
	}
	return &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{Uid: int64(u.UID), Gid: int64(u.GID), SupplementalGroups: groups}}
}
