// Package monitorplugin is Berth's container supervisor plugin (what conmon
// is to CRI-O). For each container it starts a small detached supervisor
// (internal/conmon) that owns the container's stdio, writes its CRI log,
// and records its exit code, exit time and OOM kill durably. The
// supervisors outlive this plugin and the host; the plugin answers from
// their files, so a restarted plugin loses nothing.
package monitorplugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/internal/version"
	"github.com/berth-cri/berth/plugins/monitor/internal/conmon"
	"github.com/berth-cri/berth/sdk"
	monitorv1 "github.com/berth-cri/berth/sdk/proto/monitor/v1"
)

// fileLogPath, in a container's supervision dir, records its log path.
const fileLogPath = "log.path"

// Config is the plugin's [plugins.NAME.config] table.
type Config struct {
	// CreateTimeout bounds the runtime's create command (Go duration).
	CreateTimeout string `json:"create_timeout"`
}

// Plugin implements sdk.MonitorPlugin.
type Plugin struct {
	monitorv1.UnimplementedMonitorServer

	mu            sync.Mutex
	health        sdk.Health
	createTimeout time.Duration
	log           hclog.Logger
	stateDir      string
	// creating holds, per container, a channel closed once its Watch's
	// create has settled (see startCreate).
	creating map[string]chan struct{}
}

// New returns an unconfigured plugin.
func New() *Plugin {
	return &Plugin{
		health:        sdk.Health{Reason: "NotConfigured", Message: "the host has not configured the plugin yet"},
		createTimeout: time.Minute,
		log:           hclog.NewNullLogger(),
	}
}

var _ sdk.MonitorPlugin = (*Plugin)(nil)

// MaybeRunSubcommand runs the supervisor mode of the plugin binary; it
// returns false when the binary was started as the plugin.
func MaybeRunSubcommand() bool { return conmon.MaybeRun() }

// Info implements sdk.Base.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{
		Name:          "monitor",
		Kind:          sdk.KindMonitor,
		PluginVersion: version.Version,
		Capabilities:  []sdk.Capability{sdk.CapWatch, sdk.CapLogs, sdk.CapOOM, sdk.CapReattach},
	}
}

// Configure implements sdk.Base.
func (p *Plugin) Configure(_ context.Context, c sdk.Config) error {
	cfg := Config{CreateTimeout: "1m"}
	if err := sdk.DecodeConfig(c.Raw, &cfg); err != nil {
		return err
	}
	d, err := time.ParseDuration(cfg.CreateTimeout)
	if err != nil || d <= 0 {
		return fmt.Errorf("plugin config: create_timeout %q is not a positive duration", cfg.CreateTimeout)
	}
	health := sdk.Healthy
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		health = sdk.Health{Reason: "StateDirUnavailable", Message: err.Error()}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.health, p.createTimeout, p.stateDir = health, d, c.StateDir
	if c.Logger != nil {
		p.log = c.Logger
	}
	return nil
}

// Health implements sdk.Base.
func (p *Plugin) Health(context.Context) sdk.Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}

// dirFile remembers where a container's supervisor keeps its files, so a
// restarted plugin finds it again.
func (p *Plugin) dirFile(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return filepath.Join(p.stateDir, "containers", id)
}

func (p *Plugin) dirOf(id string) (string, error) {
	b, err := os.ReadFile(p.dirFile(id))
	if err != nil {
		return "", status.Errorf(codes.NotFound, "container %s is not supervised", id)
	}
	return strings.TrimSpace(string(b)), nil
}

// Watch starts a supervisor that creates the container; it returns once the
// container exists (with its init's PID) or the create command failed.
func (p *Plugin) Watch(ctx context.Context, r *monitorv1.WatchRequest) (*monitorv1.WatchResponse, error) {
	id, dir := r.GetContainerId(), r.GetStdioDir()
	if id == "" || !filepath.IsAbs(dir) || len(r.GetCreateArgv()) == 0 || !filepath.IsAbs(r.GetCreateArgv()[0]) {
		return nil, status.Error(codes.InvalidArgument, "container_id, an absolute stdio_dir and an absolute create command are required")
	}
	if r.GetTerminal() || r.GetStdin() {
		return nil, status.Error(codes.Unimplemented, "stdin and terminals are not supported yet")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, status.Errorf(codes.Internal, "supervision dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, conmon.FileConmonPID)); err == nil {
		return nil, status.Errorf(codes.AlreadyExists, "container %s is already supervised", id)
	}
	var created <-chan struct{}
	settle := p.startCreate(id)
	defer func() { settle(created) }()
	if err := os.MkdirAll(filepath.Dir(p.dirFile(id)), 0o700); err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	if err := os.WriteFile(p.dirFile(id), []byte(dir), 0o600); err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, fileLogPath), []byte(r.GetLogPath()), 0o600); err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	p.mu.Lock()
	timeout := p.createTimeout
	p.mu.Unlock()
	_, spawned, err := conmon.Spawn(conmon.Options{Dir: dir, LogPath: r.GetLogPath(), Argv: r.GetCreateArgv(), Env: r.GetCreateEnv(),
		PIDFile: r.GetPidFile(), CreateTimeout: timeout})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "container %s: %v", id, err)
	}
	created = spawned
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-created:
	case <-timer.C:
		p.killSupervisor(dir)
		return nil, status.Errorf(codes.DeadlineExceeded, "create container %s: no answer within %v", id, timeout)
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if b, err := os.ReadFile(filepath.Join(dir, conmon.FilePID)); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return &monitorv1.WatchResponse{Pid: int32(pid)}, nil
	}
	if b, err := os.ReadFile(filepath.Join(dir, conmon.FileCreateErr)); err == nil {
		return nil, status.Errorf(codes.Internal, "create container %s: %s", id, strings.TrimSpace(string(b)))
	}
	return nil, status.Errorf(codes.Internal, "create container %s: the supervisor exited without creating it", id)
}

// startCreate records that a create of the container is under way, until
// settle is called with the supervisor's created channel (nil when none
// was spawned) and that channel is closed, or the create timeout passed.
// Watch returns early when its caller goes away (the host killed during
// CreateContainer), but the supervisor goes on creating the container:
// Forget must wait for it, not race it.
func (p *Plugin) startCreate(id string) (settle func(created <-chan struct{})) {
	ch := make(chan struct{})
	p.mu.Lock()
	if p.creating == nil {
		p.creating = map[string]chan struct{}{}
	}
	p.creating[id] = ch
	timeout := p.createTimeout
	p.mu.Unlock()
	return func(created <-chan struct{}) {
		go func() {
			if created != nil {
				select {
				case <-created:
				case <-time.After(timeout):
				}
			}
			p.mu.Lock()
			if p.creating[id] == ch {
				delete(p.creating, id)
			}
			p.mu.Unlock()
			close(ch)
		}()
	}
}

func (p *Plugin) killSupervisor(dir string) {
	if b, err := os.ReadFile(filepath.Join(dir, conmon.FileConmonPID)); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Status implements monitorv1.MonitorServer.
func (p *Plugin) Status(_ context.Context, r *monitorv1.StatusRequest) (*monitorv1.StatusResponse, error) {
	dir, err := p.dirOf(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &monitorv1.StatusResponse{}
	if b, err := os.ReadFile(filepath.Join(dir, conmon.FilePID)); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		resp.Pid = int32(pid)
	}
	exit, err := conmon.ReadExit(dir)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "container %s: %v", r.GetContainerId(), err)
	}
	if exit != nil {
		resp.Exited, resp.ExitCode, resp.ExitedAtUnixNano, resp.OomKilled = true, exit.ExitCode, exit.ExitedAt, exit.OOMKilled
		return resp, nil
	}
	// No exit file: running if the supervisor lives; if it died (kill -9)
	// the container's exit cannot be known any more. The supervisor writes
	// the exit file and then exits, possibly both since the read above: read
	// it again once the supervisor is seen dead.
	if !p.supervisorAlive(dir) {
		if exit, err := conmon.ReadExit(dir); err == nil && exit != nil {
			resp.Exited, resp.ExitCode, resp.ExitedAtUnixNano, resp.OomKilled = true, exit.ExitCode, exit.ExitedAt, exit.OOMKilled
			return resp, nil
		}
		resp.Exited, resp.ExitCode = true, -1
		resp.ExitedAtUnixNano = time.Now().UnixNano()
		return resp, nil
	}
	resp.Running = resp.Pid > 0
	return resp, nil
}

func (p *Plugin) supervisorAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, conmon.FileConmonPID))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(st), ") Z")
}

// ReopenLog implements monitorv1.MonitorServer.
func (p *Plugin) ReopenLog(_ context.Context, r *monitorv1.ReopenLogRequest) (*monitorv1.ReopenLogResponse, error) {
	dir, err := p.dirOf(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if !p.supervisorAlive(dir) {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is not running", r.GetContainerId())
	}
	b, _ := os.ReadFile(filepath.Join(dir, conmon.FileConmonPID))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return nil, status.Errorf(codes.Internal, "reopen log of %s: %v", r.GetContainerId(), err)
	}
	// Answer once the supervisor has reopened the file: kubelet (and
	// critest) look for the new file as soon as the call returns.
	if b, err := os.ReadFile(filepath.Join(dir, fileLogPath)); err == nil && len(b) > 0 {
		logPath := string(b)
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(logPath); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return nil, status.Errorf(codes.DeadlineExceeded, "container %s: log %s not reopened within 2s", r.GetContainerId(), logPath)
			}
		}
	}
	return &monitorv1.ReopenLogResponse{}, nil
}

// Forget implements monitorv1.MonitorServer: it drops the container's
// supervision files (killing a supervisor still running). Idempotent.
func (p *Plugin) Forget(_ context.Context, r *monitorv1.ForgetRequest) (*monitorv1.ForgetResponse, error) {
	// A create still under way (its Watch cut short) settles first, so
	// that its supervisor is found and killed rather than left creating.
	p.mu.Lock()
	creating, timeout := p.creating[r.GetContainerId()], p.createTimeout
	p.mu.Unlock()
	if creating != nil {
		select {
		case <-creating:
		case <-time.After(timeout):
		}
	}
	dir, err := p.dirOf(r.GetContainerId())
	if err != nil {
		return &monitorv1.ForgetResponse{}, nil
	}
	if p.supervisorAlive(dir) {
		p.killSupervisor(dir)
	}
	for _, f := range []string{conmon.FileConmonPID, conmon.FilePID, conmon.FileCreateErr, conmon.FileExit, conmon.FileInitPID, fileLogPath} {
		_ = os.Remove(filepath.Join(dir, f))
	}
	_ = os.Remove(p.dirFile(r.GetContainerId()))
	return &monitorv1.ForgetResponse{}, nil
}

// Events streams container exits (and OOM kills) as their exit files appear.
func (p *Plugin) Events(_ *monitorv1.EventsRequest, stream grpc.ServerStreamingServer[monitorv1.Event]) error {
	seen := map[string]bool{}
	first := true
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		entries, _ := os.ReadDir(filepath.Join(p.stateDirOf(), "containers"))
		for _, e := range entries {
			id := e.Name()
			if seen[id] {
				continue
			}
			dir, err := p.dirOf(id)
			if err != nil {
				continue
			}
			exit, err := conmon.ReadExit(dir)
			if err != nil || exit == nil {
				continue
			}
			seen[id] = true
			if first {
				continue // only exits after the stream started
			}
			if exit.OOMKilled {
				if err := stream.Send(&monitorv1.Event{Type: monitorv1.Event_TYPE_OOM, ContainerId: id, TimestampUnixNano: exit.ExitedAt}); err != nil {
					return err
				}
			}
			if err := stream.Send(&monitorv1.Event{Type: monitorv1.Event_TYPE_EXITED, ContainerId: id, ExitCode: exit.ExitCode, TimestampUnixNano: exit.ExitedAt}); err != nil {
				return err
			}
		}
		first = false
		select {
		case <-stream.Context().Done():
			return nil
		case <-tick.C:
		}
	}
}

func (p *Plugin) stateDirOf() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stateDir
}
