package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/host/config"
	"github.com/berth-cri/berth/host/logging"
	"github.com/berth-cri/berth/sdk"
	pluginv1 "github.com/berth-cri/berth/sdk/proto/plugin/v1"
)

// State is where a plugin is in its lifecycle.
type State string

// Plugin states.
const (
	StateStarting   State = "starting"
	StateRunning    State = "running"
	StateRestarting State = "restarting"
	StateStopped    State = "stopped"
)

// Supervision timings; variables so tests can shorten them.
var (
	healthInterval  = 5 * time.Second
	healthTimeout   = 2 * time.Second
	healthFailures  = 3 // consecutive failed health checks before a restart
	backoffInitial  = 100 * time.Millisecond
	backoffMax      = 30 * time.Second
	backoffReset    = time.Minute
	callTimeout     = 10 * time.Second // Info and Configure at start
	startTimeout    = 10 * time.Second // go-plugin handshake
	shutdownTimeout = 5 * time.Second
)

// Instance is one configured plugin and the process currently serving it.
type Instance struct {
	m    *Manager
	spec *config.Plugin
	path string
	kind sdk.Kind
	log  *slog.Logger

	// Conn routes calls to the current process; it is stable across
	// restarts. Build typed clients on it once.
	Conn grpc.ClientConnInterface

	mu        sync.Mutex
	client    *plugin.Client
	conn      *grpc.ClientConn
	socket    string
	pid       int
	version   int
	info      *pluginv1.InfoResponse
	state     State
	lastErr   error
	health    *pluginv1.HealthResponse
	restarts  int
	startedAt time.Time
	exited    <-chan struct{} // closed when the current process exits
}

func newInstance(m *Manager, spec *config.Plugin) *Instance {
	inst := &Instance{
		m:     m,
		spec:  spec,
		path:  m.cfg.PluginPath(spec),
		kind:  kindOf(spec),
		log:   m.log.With("plugin", spec.Name),
		state: StateStarting,
	}
	inst.Conn = routedConn{inst}
	return inst
}

// Name returns the plugin's configured name.
func (i *Instance) Name() string { return i.spec.Name }

// Info returns the plugin's last Info answer (nil before its first start).
func (i *Instance) Info() *pluginv1.InfoResponse {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.info
}

// HasCapability reports whether the running plugin announced c.
func (i *Instance) HasCapability(c sdk.Capability) bool {
	info := i.Info()
	return info != nil && sdk.HasCapability(info.GetCapabilities(), c)
}

// Require returns an error with codes.Unimplemented when the plugin does not
// announce capability c, so an unsupported request is refused at the host.
func (i *Instance) Require(c sdk.Capability) error {
	if i.Info() == nil {
		return i.unavailable()
	}
	if !i.HasCapability(c) {
		return status.Errorf(codes.Unimplemented, "plugin %q (%s) does not support %q", i.spec.Name, i.path, c)
	}
	return nil
}

// Snapshot is a point-in-time view of a plugin for status output.
type Snapshot struct {
	Name          string            `json:"name"`
	Kind          string            `json:"kind"`
	Path          string            `json:"path"`
	State         State             `json:"state"`
	PID           int               `json:"pid,omitempty"`
	Protocol      int               `json:"protocol,omitempty"`
	PluginVersion string            `json:"plugin_version,omitempty"`
	SDKVersion    string            `json:"sdk_version,omitempty"`
	Capabilities  []string          `json:"capabilities"`
	Attributes    map[string]string `json:"attributes,omitempty"`
	Healthy       bool              `json:"healthy"`
	Reason        string            `json:"reason,omitempty"`
	Message       string            `json:"message,omitempty"`
	Restarts      int               `json:"restarts"`
}

// Snapshot returns the plugin's current state.
func (i *Instance) Snapshot() Snapshot {
	i.mu.Lock()
	defer i.mu.Unlock()
	s := Snapshot{
		Name: i.spec.Name, Kind: string(i.kind), Path: i.path, State: i.state,
		PID: i.pid, Protocol: i.version, Restarts: i.restarts, Capabilities: []string{},
	}
	if i.info != nil {
		s.PluginVersion = i.info.GetPluginVersion()
		s.SDKVersion = i.info.GetSdkVersion()
		s.Capabilities = append(s.Capabilities, i.info.GetCapabilities()...)
		s.Attributes = i.info.GetAttributes()
	}
	switch {
	case i.state != StateRunning:
		s.Reason = "PluginNotRunning"
		s.Message = fmt.Sprintf("plugin %q is %s", i.spec.Name, i.state)
		if i.lastErr != nil {
			s.Message += ": " + i.lastErr.Error()
		}
	case i.health != nil && !i.health.GetHealthy():
		s.Reason, s.Message = i.health.GetReason(), i.health.GetMessage()
	default:
		s.Healthy = true
	}
	return s
}

// Ready reports whether the plugin is running and healthy, with the reason
// and message when it is not (for CRI Status conditions).
func (i *Instance) Ready() (bool, string, string) {
	s := i.Snapshot()
	return s.Healthy, s.Reason, s.Message
}

func (i *Instance) unavailable() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	msg := fmt.Sprintf("plugin %q is %s", i.spec.Name, i.state)
	if i.lastErr != nil {
		msg += ": " + i.lastErr.Error()
	}
	return status.Error(codes.Unavailable, msg)
}

// current returns the live connection or an Unavailable error.
func (i *Instance) current() (*grpc.ClientConn, error) {
	i.mu.Lock()
	conn, st := i.conn, i.state
	i.mu.Unlock()
	if conn == nil || st != StateRunning {
		return nil, i.unavailable()
	}
	return conn, nil
}

// routedConn sends each call to the plugin's current process.
type routedConn struct{ i *Instance }

func (r routedConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	conn, err := r.i.current()
	if err != nil {
		return err
	}
	start := time.Now()
	err = r.i.wrap(ctx, conn.Invoke(ctx, method, args, reply, opts...))
	// With --log-level debug, every plugin call and its duration: where a
	// CRI call's time goes.
	if r.i.log.Enabled(ctx, slog.LevelDebug) {
		r.i.log.Debug("plugin call", "method", method, "duration", time.Since(start), "code", status.Code(err).String())
	}
	return err
}

func (r routedConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	conn, err := r.i.current()
	if err != nil {
		return nil, err
	}
	s, err := conn.NewStream(ctx, desc, method, opts...)
	return s, r.i.wrap(ctx, err)
}

// wrap names the plugin in transport errors, which otherwise only say
// "connection refused" on some socket. A call cut off because the plugin
// died (its connection closed under it, while the caller had not given up)
// is Unavailable too, not Canceled.
func (i *Instance) wrap(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	switch {
	case ok && s.Code() == codes.Unavailable:
		return status.Errorf(codes.Unavailable, "plugin %q: %s", i.spec.Name, s.Message())
	case ok && s.Code() == codes.Canceled && ctx.Err() == nil:
		return status.Errorf(codes.Unavailable, "plugin %q went away during the call: %s", i.spec.Name, s.Message())
	}
	return err
}

// firstStart reattaches to a plugin left by a previous host, or launches it.
func (i *Instance) firstStart(ctx context.Context) error {
	if rec, err := i.loadReattach(); err == nil && rec != nil {
		if err := i.reattach(ctx, rec); err == nil {
			i.log.Info("reattached to plugin", "pid", rec.PID, "protocol", rec.Protocol)
			return nil
		} else {
			i.log.Warn("cannot reattach to plugin left by a previous host; starting a new one", "pid", rec.PID, "error", err)
			i.killStale(rec)
		}
	}
	return i.launch(ctx)
}

// launch starts a new plugin process and makes it current.
func (i *Instance) launch(ctx context.Context) error {
	i.setState(StateStarting, nil)
	err := i.doLaunch(ctx)
	if err != nil {
		i.setState(StateRestarting, err)
		i.log.Error("plugin failed to start", "path", i.path, "error", err)
	}
	return err
}

func (i *Instance) doLaunch(ctx context.Context) error {
	secure, err := i.verifyChecksum()
	if err != nil {
		return err
	}
	versions := i.m.cfg.ProtocolVersions(i.spec)
	cmd := exec.Command(i.path)
	cmd.Env = []string{
		"PATH=" + envOr("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
		plugin.EnvUnixSocketDir + "=" + i.m.socketDir,
		"BERTH_PLUGIN_NAME=" + i.spec.Name,
		"BERTH_PLUGIN_LOG_LEVEL=" + i.m.cfg.Host.LogLevel,
		"BERTH_PLUGIN_LOG_FILE=" + i.logFile(),
	}
	// Own process group: a terminal's ^C reaches the host, which then stops
	// plugins in order, instead of killing them all at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.HostPluginSets(i.kind, versions),
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logging.HCLog(i.log),
		SkipHostEnv:      true,
		StartTimeout:     startTimeout,
		Stderr:           io.Discard,
		GRPCDialOptions:  []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20))},
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return fmt.Errorf("plugin %q: binary %s changed while starting: %w", i.spec.Name, i.path, err)
		}
		return fmt.Errorf("start plugin %q (%s; host offers protocol versions %v): %w", i.spec.Name, i.path, versions, err)
	}
	version := client.NegotiatedVersion()
	if err := i.adopt(ctx, client, rpc, version); err != nil {
		client.Kill()
		return err
	}
	rc := client.ReattachConfig()
	if rc != nil && rc.Pid > 0 {
		if err := moveToPluginCgroup(rc.Pid); err != nil {
			i.log.Warn("cannot move plugin out of the host's cgroup", "pid", rc.Pid, "error", err)
		}
		if err := i.saveReattach(rc, version); err != nil {
			i.log.Warn("cannot record plugin for reattach", "error", err)
		}
	}
	return nil
}

// adopt dispenses the connection, checks Info, sends Configure and makes the
// process current.
func (i *Instance) adopt(ctx context.Context, client *plugin.Client, rpc plugin.ClientProtocol, version int) error {
	raw, err := rpc.Dispense(string(i.kind))
	if err != nil {
		return fmt.Errorf("plugin %q: dispense %s: %w", i.spec.Name, i.kind, err)
	}
	pconn, ok := raw.(*sdk.PluginConn)
	if !ok {
		return fmt.Errorf("plugin %q: unexpected client type %T", i.spec.Name, raw)
	}
	conn := pconn.ClientConn
	pc := pluginv1.NewPluginClient(conn)
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	info, err := pc.Info(cctx, &pluginv1.InfoRequest{})
	if err != nil {
		return fmt.Errorf("plugin %q: Info: %w", i.spec.Name, err)
	}
	if got := sdk.KindFromProto(info.GetKind()); got != i.kind {
		return fmt.Errorf("plugin %q (%s) is a %q plugin, but plugins.toml declares kind %q", i.spec.Name, i.path, got, i.kind)
	}
	cfgJSON, err := json.Marshal(i.spec.Config)
	if err != nil {
		return fmt.Errorf("plugin %q: encode config: %w", i.spec.Name, err)
	}
	if i.spec.Config == nil {
		cfgJSON = []byte("{}")
	}
	stateDir := filepath.Join(i.m.cfg.Host.Root, "plugins", i.spec.Name)
	runDir := filepath.Join(i.m.cfg.Host.RunRoot, "plugins", "run", i.spec.Name)
	for _, d := range []string{stateDir, runDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("plugin %q: %w", i.spec.Name, err)
		}
	}
	if _, err := pc.Configure(cctx, &pluginv1.ConfigureRequest{
		ConfigJson:      cfgJSON,
		StateDir:        stateDir,
		RunDir:          runDir,
		ProtocolVersion: int32(version),
		LogLevel:        i.m.cfg.Host.LogLevel,
		CgroupDriver:    i.m.cfg.Host.CgroupDriver,
	}); err != nil {
		return fmt.Errorf("plugin %q: Configure: %w", i.spec.Name, err)
	}
	// Ask again: attributes such as the runtime binary's version are known
	// only once the plugin is configured.
	if info, err = pc.Info(cctx, &pluginv1.InfoRequest{}); err != nil {
		return fmt.Errorf("plugin %q: Info: %w", i.spec.Name, err)
	}
	health, err := pc.Health(cctx, &pluginv1.HealthRequest{})
	if err != nil {
		return fmt.Errorf("plugin %q: Health: %w", i.spec.Name, err)
	}
	rc := client.ReattachConfig()
	i.mu.Lock()
	i.client, i.conn, i.info, i.version, i.health = client, conn, info, version, health
	i.exited = pconn.Done
	i.pid, i.socket = 0, ""
	if rc != nil {
		i.pid = rc.Pid
		if rc.Addr != nil && rc.Addr.Network() == "unix" {
			i.socket = rc.Addr.String()
		}
	}
	i.state, i.lastErr, i.startedAt = StateRunning, nil, time.Now()
	i.mu.Unlock()
	if !health.GetHealthy() {
		i.log.Warn("plugin reports unhealthy", "reason", health.GetReason(), "message", health.GetMessage())
	}
	i.log.Info("plugin running", "pid", i.pid, "protocol", version, "version", info.GetPluginVersion(), "capabilities", info.GetCapabilities())
	return nil
}

// verifyChecksum computes the binary's digest and compares it with
// plugins.toml, so the error names the file and both digests; go-plugin's
// SecureConfig checks again right before exec.
func (i *Instance) verifyChecksum() (*plugin.SecureConfig, error) {
	if i.spec.SHA256 == "" {
		return nil, nil
	}
	actual, err := fileSHA256(i.path)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %w", i.spec.Name, err)
	}
	if actual != i.spec.SHA256 {
		return nil, fmt.Errorf("plugin %q: refusing %s: its SHA-256 is %s but plugins.toml expects %s", i.spec.Name, i.path, actual, i.spec.SHA256)
	}
	sum, _ := hex.DecodeString(i.spec.SHA256)
	return &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open plugin binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash plugin binary %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (i *Instance) setState(s State, err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.state = s
	if err != nil {
		i.lastErr = err
	}
}

// supervise watches the current process, restarts it when it exits or stops
// answering, and retries failed starts with exponential backoff. It sleeps
// between events: an exit is signalled by go-plugin, health is polled.
func (i *Instance) supervise(ctx context.Context) {
	backoff := backoffInitial
	failures := 0
	health := time.NewTicker(healthInterval)
	defer health.Stop()
	for {
		i.mu.Lock()
		st, exited, started := i.state, i.exited, i.startedAt
		i.mu.Unlock()

		if st == StateRunning {
			select {
			case <-ctx.Done():
				return
			case <-health.C:
				if time.Since(started) > backoffReset {
					backoff = backoffInitial
				}
				if i.checkHealth(ctx) {
					failures = 0
				} else if failures++; failures >= healthFailures {
					i.log.Error("plugin stopped answering health checks; restarting it", "failures", failures)
					failures = 0
					i.drop(fmt.Errorf("no answer to %d health checks", healthFailures))
				}
				continue
			case <-exited:
				i.log.Error("plugin exited; restarting it")
				i.drop(errors.New("plugin process exited"))
			}
		}
		// Restart, waiting out the backoff first (cancellable).
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		i.mu.Lock()
		i.restarts++
		i.mu.Unlock()
		if err := i.launch(ctx); err != nil {
			backoff = min(backoff*2, backoffMax)
			continue
		}
		health.Reset(healthInterval)
	}
}

// checkHealth calls Health and records the answer; false means no answer.
func (i *Instance) checkHealth(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	h, err := pluginv1.NewPluginClient(i.Conn).Health(cctx, &pluginv1.HealthRequest{})
	if err != nil {
		i.log.Warn("health check failed", "error", err)
		return false
	}
	i.mu.Lock()
	prev := i.health
	i.health = h
	i.mu.Unlock()
	if prev == nil || prev.GetHealthy() != h.GetHealthy() || prev.GetReason() != h.GetReason() {
		i.log.Info("plugin health changed", "healthy", h.GetHealthy(), "reason", h.GetReason(), "message", h.GetMessage())
	}
	return true
}

// drop forgets the current process (killing it if it still runs) so calls
// fail fast until the restart.
func (i *Instance) drop(reason error) {
	i.mu.Lock()
	client, socket := i.client, i.socket
	i.client, i.conn, i.state, i.lastErr = nil, nil, StateRestarting, reason
	i.mu.Unlock()
	if client != nil {
		client.Kill()
	}
	if socket != "" {
		_ = os.Remove(socket)
	}
	i.removeReattach()
}

// shutdown stops the plugin for good (host shutdown).
func (i *Instance) shutdown() {
	i.mu.Lock()
	client := i.client
	i.client, i.conn, i.state = nil, nil, StateStopped
	i.mu.Unlock()
	if client == nil {
		return
	}
	done := make(chan struct{})
	go func() { client.Kill(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownTimeout):
		i.log.Warn("plugin did not stop in time")
	}
	i.removeReattach()
}

func (i *Instance) socketPath() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.socket
}

func (i *Instance) logFile() string {
	return filepath.Join(i.m.stateDir, i.spec.Name+".log")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
