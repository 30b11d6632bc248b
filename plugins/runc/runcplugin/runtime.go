package runcplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/plugins/runc/internal/cgroups"
	"github.com/berth-cri/berth/plugins/runc/internal/ociruntime"
	"github.com/berth-cri/berth/plugins/runc/internal/sandbox"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

func rpcErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, ociruntime.ErrNotExist) {
		return status.Error(codes.NotFound, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// sandboxHandle is what the host persists for a sandbox and hands back.
type sandboxHandle struct {
	Version    int               `json:"version"`
	Dir        string            `json:"dir"`
	Namespaces map[string]string `json:"namespaces"`
	InitPID    int               `json:"init_pid,omitempty"`
	// Gvisor: the pod is a gVisor sandbox (runsc.go).
	Gvisor bool `json:"gvisor,omitempty"`
}

// CreateSandbox pins the pod's new namespaces and starts the pod init when
// the pod has its own PID namespace. spec_json is an OCI spec whose
// linux.namespaces lists the namespaces the pod needs (paths empty) and
// whose hostname is the pod's.
func (p *Plugin) CreateSandbox(ctx context.Context, r *runtimev1.CreateSandboxRequest) (*runtimev1.CreateSandboxResponse, error) {
	defer lockID(r.GetSandboxId())()
	c, err := p.classFor(r.GetOptions())
	if err != nil {
		return nil, err
	}
	if c.gvisor {
		return p.gvisorCreateSandbox(ctx, c, r)
	}
	var spec specs.Spec
	if err := json.Unmarshal(r.GetSpecJson(), &spec); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "spec_json: %v", err)
	}
	p.mu.Lock()
	runDir := p.runDir
	p.mu.Unlock()
	dir := filepath.Join(runDir, "sandboxes", r.GetSandboxId())
	var pin []string
	wantPID := false
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			switch ns.Type {
			case specs.NetworkNamespace:
				pin = append(pin, sandbox.NetNS)
			case specs.IPCNamespace:
				pin = append(pin, sandbox.IPCNS)
			case specs.UTSNamespace:
				pin = append(pin, sandbox.UTSNS)
			case specs.PIDNamespace:
				wantPID = true
			}
		}
	}
	paths, err := sandbox.Pin(dir, spec.Hostname, pin)
	if err != nil {
		os.RemoveAll(dir)
		return nil, status.Errorf(codes.Internal, "sandbox %s: %v", r.GetSandboxId(), err)
	}
	h := sandboxHandle{Version: 1, Dir: dir, Namespaces: paths}
	if wantPID {
		pid, err := sandbox.StartInit()
		if err == nil {
			err = sandbox.PinPath(fmt.Sprintf("/proc/%d/ns/pid", pid), filepath.Join(dir, sandbox.PIDNS))
			if err != nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if err != nil {
			sandbox.Unpin(paths)
			os.RemoveAll(dir)
			return nil, status.Errorf(codes.Internal, "sandbox %s: pod init: %v", r.GetSandboxId(), err)
		}
		h.InitPID = pid
		h.Namespaces[sandbox.PIDNS] = filepath.Join(dir, sandbox.PIDNS)
		// The init is the pod's: its memory and CPU count in the pod's
		// cgroup parent, not in the plugin's. A systemd slice is systemd's
		// to create, so the init stays put under the systemd driver.
		if cg := spec.Linux.CgroupsPath; strings.HasPrefix(cg, "/") {
			if err := joinPodCgroup(cg, pid); err != nil {
				syscall.Kill(pid, syscall.SIGKILL)
				sandbox.Unpin(h.Namespaces)
				os.RemoveAll(dir)
				return nil, status.Errorf(codes.Internal, "sandbox %s: %v", r.GetSandboxId(), err)
			}
		}
	}
	handle, _ := json.Marshal(h)
	return &runtimev1.CreateSandboxResponse{NamespacePaths: h.Namespaces, Handle: handle, InitPid: int32(h.InitPID)}, nil
}

// handleFor decodes a handle; an empty one (the host died before it got
// it) is rebuilt from what CreateSandbox leaves on disk.
func (p *Plugin) handleFor(id string, b []byte) (*sandboxHandle, error) {
	if len(b) > 0 {
		return decodeHandle(b)
	}
	p.mu.Lock()
	dir := filepath.Join(p.runDir, "sandboxes", id)
	p.mu.Unlock()
	h := &sandboxHandle{Version: 1, Dir: dir, Namespaces: map[string]string{}}
	for _, t := range []string{sandbox.NetNS, sandbox.IPCNS, sandbox.UTSNS, sandbox.PIDNS} {
		if _, err := os.Stat(filepath.Join(dir, t)); err == nil {
			h.Namespaces[t] = filepath.Join(dir, t)
		}
	}
	if pidns, ok := h.Namespaces[sandbox.PIDNS]; ok {
		h.InitPID = sandbox.InitOf(pidns)
	}
	h.Gvisor = isGvisorSandbox(dir)
	return h, nil
}

func decodeHandle(b []byte) (*sandboxHandle, error) {
	var h sandboxHandle
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "handle: %v", err)
	}
	return &h, nil
}

// StopSandbox stops the pod init, which ends every process of the pod's
// PID namespace. Idempotent.
func (p *Plugin) StopSandbox(ctx context.Context, r *runtimev1.StopSandboxRequest) (*runtimev1.StopSandboxResponse, error) {
	defer lockID(r.GetSandboxId())()
	return p.stopSandbox(ctx, r)
}

func (p *Plugin) stopSandbox(ctx context.Context, r *runtimev1.StopSandboxRequest) (*runtimev1.StopSandboxResponse, error) {
	h, err := p.handleFor(r.GetSandboxId(), r.GetHandle())
	if err != nil {
		return nil, err
	}
	if h.Gvisor {
		return &runtimev1.StopSandboxResponse{}, p.gvisorStopSandbox(ctx, r.GetOptions(), r.GetSandboxId())
	}
	if h.InitPID > 0 && sandbox.InitAlive(h.InitPID) {
		_ = syscall.Kill(h.InitPID, syscall.SIGKILL)
		// Wait until it has exited, not only until it stops looking like a
		// pod init: an exiting process loses its command line before it
		// leaves its cgroups, and the pod's cgroup cannot be removed
		// until it has.
		// A killed init is usually gone within a millisecond: poll from
		// 1 ms, backing off to 10 ms, for up to a second.
		pause := time.Millisecond
		for deadline := time.Now().Add(time.Second); !exited(h.InitPID) && time.Now().Before(deadline); {
			time.Sleep(pause)
			pause = min(2*pause, 10*time.Millisecond)
		}
	}
	return &runtimev1.StopSandboxResponse{}, nil
}

// idLocks serialise the calls on one sandbox (CreateSandbox, StopSandbox,
// RemoveSandbox) and the deletes of one container. A CreateSandbox the host
// was killed during goes on here; the restarted host's RemoveSandbox of the
// half-made pod must wait for it and find everything it made (pins, pod
// init, cgroup), not race it and leave the rest behind. Two `runc delete
// --force` of one container at once fail ("invalid state transition from
// stopped to paused"): the host deletes an exited container in the
// background and again when it is removed.
var idLocks = struct {
	sync.Mutex
	m map[string]*idLock
}{m: map[string]*idLock{}}

type idLock struct {
	sync.Mutex
	refs int
}

func lockID(id string) (unlock func()) {
	idLocks.Lock()
	l := idLocks.m[id]
	if l == nil {
		l = &idLock{}
		idLocks.m[id] = l
	}
	l.refs++
	idLocks.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		idLocks.Lock()
		if l.refs--; l.refs == 0 {
			delete(idLocks.m, id)
		}
		idLocks.Unlock()
	}
}

// exited reports whether pid is gone or a zombie (past leaving its cgroups).
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) == 0 || f[0] == "Z" || f[0] == "X"
}

// RemoveSandbox unpins the namespaces and removes the sandbox directory.
// Idempotent.
func (p *Plugin) RemoveSandbox(ctx context.Context, r *runtimev1.RemoveSandboxRequest) (*runtimev1.RemoveSandboxResponse, error) {
	defer lockID(r.GetSandboxId())()
	h, err := p.handleFor(r.GetSandboxId(), r.GetHandle())
	if err != nil {
		return nil, err
	}
	if h.Gvisor {
		if err := p.gvisorRemoveSandbox(ctx, r.GetOptions(), r.GetSandboxId()); err != nil {
			return nil, err
		}
	}
	if _, err := p.stopSandbox(ctx, &runtimev1.StopSandboxRequest{SandboxId: r.GetSandboxId(), Options: r.GetOptions(), Handle: r.GetHandle()}); err != nil {
		return nil, err
	}
	if err := sandbox.Unpin(h.Namespaces); err != nil {
		return nil, status.Errorf(codes.Internal, "sandbox %s: %v", r.GetSandboxId(), err)
	}
	if err := os.RemoveAll(h.Dir); err != nil {
		return nil, status.Errorf(codes.Internal, "sandbox %s: %v", r.GetSandboxId(), err)
	}
	return &runtimev1.RemoveSandboxResponse{}, nil
}

// CreateCommand returns the runtime's create command for the monitor.
func (p *Plugin) CreateCommand(ctx context.Context, r *runtimev1.CreateCommandRequest) (*runtimev1.CreateCommandResponse, error) {
	if r.GetTerminal() {
		return nil, status.Error(codes.Unimplemented, "terminals are not supported yet")
	}
	if !filepath.IsAbs(r.GetBundle()) || !filepath.IsAbs(r.GetPidFile()) {
		return nil, status.Error(codes.InvalidArgument, "bundle and pid_file must be absolute paths")
	}
	c, err := p.classFor(r.GetOptions())
	if err != nil {
		return nil, err
	}
	if c.gvisor {
		return p.gvisorCreateCommand(ctx, c, r)
	}
	return &runtimev1.CreateCommandResponse{Argv: c.rt.CreateArgv(r.GetContainerId(), r.GetBundle(), r.GetPidFile())}, nil
}

// Start implements runtimev1.RuntimeServer.
func (p *Plugin) Start(ctx context.Context, r *runtimev1.StartRequest) (*runtimev1.StartResponse, error) {
	c, err := p.classFor(r.GetOptions())
	if err != nil {
		return nil, err
	}
	if c.gvisor {
		return &runtimev1.StartResponse{}, p.gvisorStart(ctx, c, r.GetContainerId())
	}
	return &runtimev1.StartResponse{}, rpcErr(c.rt.Start(ctx, r.GetContainerId()))
}

// Kill implements runtimev1.RuntimeServer.
func (p *Plugin) Kill(ctx context.Context, r *runtimev1.KillRequest) (*runtimev1.KillResponse, error) {
	c, err := p.classFor(r.GetOptions())
	if err != nil {
		return nil, err
	}
	if c.gvisor && p.gvisorAbort(ctx, r.GetContainerId(), syscall.Signal(r.GetSignal())) {
		// Never started: its keeper ended as if killed.
		return &runtimev1.KillResponse{}, nil
	}
	return &runtimev1.KillResponse{}, rpcErr(c.rt.Kill(ctx, r.GetContainerId(), syscall.Signal(r.GetSignal()), r.GetAll()))
}

// Delete implements runtimev1.RuntimeServer.
func (p *Plugin) Delete(ctx context.Context, r *runtimev1.DeleteRequest) (*runtimev1.DeleteResponse, error) {
	defer lockID("container/" + r.GetContainerId())()
	c, err := p.classFor(r.GetOptions())
	if err != nil {
		return nil, err
	}
	if c.gvisor {
		return &runtimev1.DeleteResponse{}, p.gvisorDelete(ctx, c, r.GetContainerId())
	}
	return &runtimev1.DeleteResponse{}, rpcErr(c.rt.Delete(ctx, r.GetContainerId()))
}

// State implements runtimev1.RuntimeServer.
func (p *Plugin) State(ctx context.Context, r *runtimev1.StateRequest) (*runtimev1.StateResponse, error) {
	rt, err := p.runtimeFor(r.GetOptions())
	if err != nil {
		return nil, err
	}
	st, err := rt.State(ctx, r.GetContainerId())
	if err != nil {
		return nil, rpcErr(err)
	}
	return &runtimev1.StateResponse{Status: st.Status, Pid: int32(st.Pid), Bundle: st.Bundle, Annotations: st.Annotations}, nil
}

// Update implements runtimev1.RuntimeServer.
func (p *Plugin) Update(ctx context.Context, r *runtimev1.UpdateRequest) (*runtimev1.UpdateResponse, error) {
	c, err := p.classFor(r.GetOptions())
	if err != nil {
		return nil, err
	}
	if c.gvisor {
		return nil, gvisorUpdateErr(c)
	}
	return &runtimev1.UpdateResponse{}, rpcErr(c.rt.Update(ctx, r.GetContainerId(), r.GetResourcesJson()))
}

// Stats implements runtimev1.RuntimeServer.
func (p *Plugin) Stats(ctx context.Context, r *runtimev1.StatsRequest) (*runtimev1.StatsResponse, error) {
	c, err := p.classFor(r.GetOptions())
	if err != nil {
		return nil, err
	}
	if !c.gvisor {
		// Straight from the container's cgroup, without running the
		// runtime, when the host names the init.
		if st, ok := cgroupStats(r.GetContainerId(), int(r.GetPid())); ok {
			return statsResponse(st), nil
		}
	}
	st, err := c.rt.Stats(ctx, r.GetContainerId())
	if err != nil {
		return nil, rpcErr(err)
	}
	if c.gvisor {
		return gvisorStats(st), nil
	}
	if h, err := cgroupHierarchy(); err == nil && r.GetPid() > 0 {
		if path, err := cgroups.ForPID(int(r.GetPid())); err == nil {
			h.ReadProcesses(path, st)
		}
	}
	return statsResponse(st), nil
}
