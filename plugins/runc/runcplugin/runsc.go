package runcplugin

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/plugins/runc/internal/gvisor"
	"github.com/berth-cri/berth/plugins/runc/internal/ociruntime"
	"github.com/berth-cri/berth/plugins/runc/internal/sandbox"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

// gVisor pods: runtime classes with sandbox = "gvisor" (the default for a
// runsc binary). See internal/gvisor for the model: a root container of
// Berth's own per pod, containers joining it, a keeper per container.

// isGvisorSandbox reports whether a sandbox directory holds a gVisor pod.
func isGvisorSandbox(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, gvisor.BundleDir))
	return err == nil
}

func runscOf(c *runtimeClass) gvisor.Runsc {
	return gvisor.Runsc{Binary: c.rt.Binary, Root: c.rt.Root, Args: c.rt.Args}
}

// keeperDir holds the keepers' sockets.
func (p *Plugin) keeperDir() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return filepath.Join(p.runDir, "gvisor")
}

func (p *Plugin) sandboxDir(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return filepath.Join(p.runDir, "sandboxes", id)
}

// unsupported answers a request gVisor cannot serve.
func unsupported(c *runtimeClass, err error) error {
	return status.Errorf(codes.Unimplemented, "runtime class %q (gVisor): %v", c.handler, err)
}

// gvisorCreateSandbox pins the pod's network namespace and starts the
// pod's gVisor sandbox: its root container runs the pod init.
func (p *Plugin) gvisorCreateSandbox(ctx context.Context, c *runtimeClass, r *runtimev1.CreateSandboxRequest) (*runtimev1.CreateSandboxResponse, error) {
	var spec specs.Spec
	if err := json.Unmarshal(r.GetSpecJson(), &spec); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "spec_json: %v", err)
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	id := r.GetSandboxId()
	if c.rt.SystemdCgroup {
		return nil, unsupported(c, gvisor.ErrSystemdCgroup)
	}
	var pin []string
	wantPID, hasIPC := false, false
	for _, ns := range spec.Linux.Namespaces {
		switch ns.Type {
		case specs.NetworkNamespace:
			pin = append(pin, sandbox.NetNS)
		case specs.IPCNamespace:
			pin, hasIPC = append(pin, sandbox.IPCNS), true
		case specs.UTSNamespace:
			pin = append(pin, sandbox.UTSNS)
		case specs.PIDNamespace:
			wantPID = true
		}
	}
	if !hasIPC {
		return nil, unsupported(c, gvisor.ErrHostIPC)
	}
	cgroupsPath, err := gvisor.CgroupsPath(spec.Linux.CgroupsPath, id)
	if err != nil {
		return nil, unsupported(c, err)
	}
	self, err := podInitBinary()
	if err != nil {
		return nil, err
	}
	dir := p.sandboxDir(id)
	paths, err := sandbox.Pin(dir, spec.Hostname, pin)
	if err != nil {
		os.RemoveAll(dir)
		return nil, status.Errorf(codes.Internal, "sandbox %s: %v", id, err)
	}
	// runsc creates the pod's cgroup parent if it is missing; a failed
	// pod takes it away again (one that existed is the kubelet's).
	parent := filepath.Dir(cgroupsPath)
	parentExisted := gvisor.CgroupExists(parent)
	undo := func() {
		_ = c.rt.Delete(context.Background(), id)
		deadline := time.Now().Add(2 * time.Second)
		_ = gvisor.RemoveCgroup(cgroupsPath, deadline)
		if !parentExisted {
			_ = gvisor.RemoveCgroup(parent, deadline)
		}
		sandbox.Unpin(paths)
		os.RemoveAll(dir)
	}
	h := sandboxHandle{Version: 1, Dir: dir, Namespaces: paths, Gvisor: true}
	root := gvisor.Root{ID: id, Hostname: spec.Hostname, NetNS: paths[sandbox.NetNS], CgroupsPath: cgroupsPath, Init: self}
	if wantPID {
		// The PID namespace the pod's containers share is the root
		// container's, keyed by this path (see gvisor.Root.PIDKey).
		root.PIDKey = filepath.Join(dir, sandbox.PIDNS)
		if err := os.WriteFile(root.PIDKey, nil, 0o400); err != nil {
			undo()
			return nil, status.Errorf(codes.Internal, "sandbox %s: %v", id, err)
		}
		h.Namespaces[sandbox.PIDNS] = root.PIDKey
	}
	bundle := filepath.Join(dir, gvisor.BundleDir)
	if err := gvisor.WriteRootBundle(bundle, root); err != nil {
		undo()
		return nil, status.Errorf(codes.Internal, "sandbox %s: root container bundle: %v", id, err)
	}
	pid, err := startRoot(ctx, c, id, bundle)
	if err != nil {
		undo()
		return nil, err
	}
	handle, _ := json.Marshal(h)
	return &runtimev1.CreateSandboxResponse{NamespacePaths: h.Namespaces, Handle: handle, InitPid: int32(pid)}, nil
}

// startRoot creates and starts the root container and returns the
// sandbox's PID. runsc's output goes to a file in the bundle: the sandbox
// and its gofer keep the command's streams, so a pipe would never close.
func startRoot(ctx context.Context, c *runtimeClass, id, bundle string) (int, error) {
	logPath := filepath.Join(bundle, "runsc.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, status.Errorf(codes.Internal, "sandbox %s: %v", id, err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, status.Errorf(codes.Internal, "sandbox %s: %v", id, err)
	}
	defer devnull.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r := runscOf(c)
	pidFile := filepath.Join(bundle, "sandbox.pid")
	for _, args := range [][]string{{"create", "--bundle", bundle, "--pid-file", pidFile, id}, {"start", id}} {
		cmd := r.Command(ctx, args...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
		if err := cmd.Run(); err != nil {
			out, _ := os.ReadFile(logPath)
			return 0, runscErr(c, id, args[0], err, string(out))
		}
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, status.Errorf(codes.Internal, "sandbox %s: %v", id, err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, nil
}

// runscErr explains a failed runsc command, with a way out for the
// failures known on Debian 12's runsc.
func runscErr(c *runtimeClass, id, what string, err error, out string) error {
	out = strings.TrimSpace(out)
	if strings.Contains(out, "cannot run with network enabled in root network namespace") {
		return status.Errorf(codes.FailedPrecondition, "runtime class %q (gVisor): sandbox %s: runsc %s: gVisor's own network stack (--network=sandbox) does not start on this kernel: "+
			"runsc takes the pod's network namespace for the node's (gVisor issue 10704, fixed in runsc releases after 20221219); "+
			"set runtime_args = [\"--network=host\"] in [runtime_classes.%s.config] or install a newer runsc: %s", c.handler, id, what, c.handler, out)
	}
	return status.Errorf(codes.Internal, "runtime class %q (gVisor): sandbox %s: runsc %s: %v: %s", c.handler, id, what, err, out)
}

// podInitBinary is the pod init program (berth-pod-init next to the
// plugin, else the plugin binary), which runs as the root process of each
// gVisor sandbox. The sandbox has no shared libraries, so it must be static.
func podInitBinary() (string, error) {
	self, err := sandbox.InitBinary()
	if err != nil {
		return "", status.Errorf(codes.Internal, "pod init: %v", err)
	}
	f, err := elf.Open(self)
	if err != nil {
		return "", status.Errorf(codes.Internal, "pod init: %v", err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", status.Errorf(codes.FailedPrecondition, "gVisor pods run the plugin binary %s as their init inside the sandbox, which has no shared libraries, "+
				"but it is dynamically linked: build it with CGO_ENABLED=0 (as `make build` does)", self)
		}
	}
	return self, nil
}

// gvisorStopSandbox kills the root container, which stops the sandbox and
// every container in it. Idempotent.
func (p *Plugin) gvisorStopSandbox(ctx context.Context, opts *runtimev1.RuntimeOptions, id string) error {
	c, err := p.classFor(opts)
	if err != nil {
		return err
	}
	st, err := c.rt.State(ctx, id)
	if errors.Is(err, ociruntime.ErrNotExist) {
		return nil
	}
	if err != nil {
		return rpcErr(err)
	}
	if st.Status == "stopped" {
		return nil
	}
	if err := c.rt.Kill(ctx, id, syscall.SIGKILL, false); err != nil && !errors.Is(err, ociruntime.ErrNotExist) {
		return rpcErr(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := c.rt.State(ctx, id)
		if err != nil || st.Status == "stopped" {
			return nil
		}
		if time.Now().After(deadline) {
			return status.Errorf(codes.DeadlineExceeded, "sandbox %s: the gVisor sandbox did not stop within 10s of SIGKILL", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gvisorRemoveSandbox stops the sandbox, deletes its root container, and
// removes the cgroups runsc leaves under the pod's cgroup parent.
// Idempotent.
func (p *Plugin) gvisorRemoveSandbox(ctx context.Context, opts *runtimev1.RuntimeOptions, id string) error {
	if err := p.gvisorStopSandbox(ctx, opts, id); err != nil {
		return err
	}
	c, err := p.classFor(opts)
	if err != nil {
		return err
	}
	if err := deleteContainer(ctx, c, id); err != nil {
		return err
	}
	var root specs.Spec
	b, err := os.ReadFile(filepath.Join(p.sandboxDir(id), gvisor.BundleDir, "config.json"))
	if err == nil && json.Unmarshal(b, &root) == nil && root.Linux != nil && root.Linux.CgroupsPath != "" {
		if err := gvisor.RemoveChildCgroups(filepath.Dir(root.Linux.CgroupsPath), time.Now().Add(5*time.Second)); err != nil {
			return status.Errorf(codes.Internal, "sandbox %s: %v", id, err)
		}
	}
	return nil
}

// deleteContainer deletes a runsc container and its cgroup. Right after
// its sandbox died runsc may fail to reach it ("connection refused"), so it
// retries.
func deleteContainer(ctx context.Context, c *runtimeClass, id string) error {
	cgroup := ""
	if st, err := c.rt.State(ctx, id); err == nil {
		var spec specs.Spec
		if b, err := os.ReadFile(filepath.Join(st.Bundle, "config.json")); err == nil && json.Unmarshal(b, &spec) == nil && spec.Linux != nil {
			cgroup = spec.Linux.CgroupsPath
		}
	}
	var err error
	for i := 0; i < 5; i++ {
		if err = c.rt.Delete(ctx, id); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return rpcErr(err)
	}
	// Best effort: what is left is swept when the pod is removed.
	_ = gvisor.RemoveCgroup(cgroup, time.Now().Add(time.Second))
	return nil
}

// gvisorCreateCommand readies the bundle to join the pod's sandbox and
// returns the command that creates the container and leaves its keeper.
func (p *Plugin) gvisorCreateCommand(ctx context.Context, c *runtimeClass, r *runtimev1.CreateCommandRequest) (*runtimev1.CreateCommandResponse, error) {
	sbID := r.GetSandboxId()
	sbDir := p.sandboxDir(sbID)
	if !isGvisorSandbox(sbDir) {
		return nil, status.Errorf(codes.FailedPrecondition, "runtime class %q (gVisor): pod %s has no gVisor sandbox (was it created with another runtime class configuration?)", c.handler, sbID)
	}
	if st, err := c.rt.State(ctx, sbID); err != nil || st.Status != "running" {
		why := "it does not exist"
		if err == nil {
			why = "it is " + st.Status
		} else if !errors.Is(err, ociruntime.ErrNotExist) {
			why = err.Error()
		}
		return nil, status.Errorf(codes.FailedPrecondition, "runtime class %q (gVisor): the sandbox of pod %s is not running (%s): its root container exited, which stops every container of the pod; remove the pod and create it again", c.handler, sbID, why)
	}
	pidKey := filepath.Join(sbDir, sandbox.PIDNS)
	if _, err := os.Stat(pidKey); err != nil {
		pidKey = ""
	}
	if err := gvisor.PrepareBundle(r.GetBundle(), sbID, pidKey); err != nil {
		for _, known := range []error{gvisor.ErrHostPID, gvisor.ErrHostIPC, gvisor.ErrTargetPID} {
			if errors.Is(err, known) {
				return nil, unsupported(c, err)
			}
		}
		return nil, status.Errorf(codes.Internal, "container %s: %v", r.GetContainerId(), err)
	}
	self, err := gvisor.Binary()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	dir := p.keeperDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	argv, err := gvisor.CreateArgv(self, gvisor.Keeper{Runsc: runscOf(c), ID: r.GetContainerId(), Bundle: r.GetBundle(),
		Socket: gvisor.Socket(dir, r.GetContainerId()), PIDFile: r.GetPidFile()})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	return &runtimev1.CreateCommandResponse{Argv: argv}, nil
}

// gvisorStart has the container's keeper run `runsc start` (runsc gives
// the container the streams of that command).
func (p *Plugin) gvisorStart(ctx context.Context, c *runtimeClass, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	reply, err := gvisor.Request(ctx, gvisor.Socket(p.keeperDir(), id), "start")
	switch {
	case errors.Is(err, gvisor.ErrNoKeeper):
		return status.Errorf(codes.FailedPrecondition, "container %s: %v (it was stopped before it started, or its supervisor died)", id, err)
	case err != nil:
		return status.Errorf(codes.Internal, "container %s: start: %v", id, err)
	case reply == "ok":
		return nil
	}
	msg := strings.TrimPrefix(reply, "error ")
	if strings.Contains(msg, "does not exist") {
		return status.Errorf(codes.NotFound, "container %s: %s", id, msg)
	}
	return status.Errorf(codes.Internal, "runtime class %q (gVisor): container %s: %s", c.handler, id, msg)
}

// gvisorAbort ends the keeper of a container that was never started, as
// if the container had been killed by sig; false when the container has
// started (or has no keeper), and runsc must signal it.
func (p *Plugin) gvisorAbort(ctx context.Context, id string, sig syscall.Signal) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	reply, err := gvisor.Request(ctx, gvisor.Socket(p.keeperDir(), id), fmt.Sprintf("abort %d", int(sig)))
	return err == nil && reply == "aborted"
}

// gvisorDelete removes a container from its sandbox.
func (p *Plugin) gvisorDelete(ctx context.Context, c *runtimeClass, id string) error {
	p.gvisorAbort(ctx, id, syscall.SIGKILL)
	if err := deleteContainer(ctx, c, id); err != nil {
		return err
	}
	os.Remove(gvisor.Socket(p.keeperDir(), id))
	return nil
}

// gvisorUpdateErr: runsc cannot update a container's resources.
func gvisorUpdateErr(c *runtimeClass) error {
	return status.Errorf(codes.Unimplemented, "runtime class %q (gVisor): a container's resources cannot be changed: runsc (0.0~20221219) has no update command, "+
		"and every process of a gVisor pod runs in the sandbox's cgroup, not in its container's; change the pod's resources instead", c.handler)
}

// gvisorStats keeps the CPU time runsc accounts per container. runsc
// (0.0~20221219) reports memory and PIDs for the whole sandbox only, under
// every container's ID (gVisor issue 172); reporting that for each
// container would count the pod N times, so they are left out (zero). The
// pod's total is its cgroup's: SandboxStats.
func gvisorStats(st *ociruntime.Stats) *runtimev1.StatsResponse {
	return &runtimev1.StatsResponse{TimestampUnixNano: time.Now().UnixNano(), CpuUsageNanoCoresTotal: st.CPUTotalNanos}
}

// gvisorKillExec kills an exec'd process and its descendants inside the
// sandbox (runsc exec's PID is the runsc command's, not the process's),
// then the runsc command if it lingers.
func gvisorKillExec(c *runtimeClass, id, internalPIDFile string, cmd *exec.Cmd) {
	if b, err := os.ReadFile(internalPIDFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = gvisor.KillTree(ctx, runscOf(c), id, pid)
			cancel()
		}
	}
	go func() {
		time.Sleep(5 * time.Second)
		if cmd.ProcessState == nil && cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
}
