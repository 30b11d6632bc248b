// Package plugins starts, supervises and talks to Berth's out-of-process
// plugins. It is the only part of the host that knows about go-plugin; the
// rest of the host asks a Manager for a plugin by name and gets typed gRPC
// clients from the sdk module that keep working across plugin restarts.
//
// Lifecycle of a plugin:
//
//   - start: the binary's SHA-256 is checked against plugins.toml (when
//     given), the process is started with its go-plugin socket in a 0700
//     directory under the runroot, the protocol major is negotiated (the host
//     offers every major it speaks unless plugins.toml pins one), Info is
//     checked against the configured kind, and Configure hands over the
//     plugin's config table. The process is then moved out of the host's
//     cgroup so that stopping the host's service does not kill it.
//   - supervision: an exited process is noticed at once and restarted
//     with exponential backoff (100 ms doubling to 30 s, reset after a minute
//     of good health); Health is polled every 5 s, and a plugin that stops
//     answering is killed and restarted. While a plugin is down its clients
//     fail fast with codes.Unavailable naming the plugin.
//   - host crash: plugins ignore SIGPIPE and outlive the host. The reattach
//     record written at start lets the next host reattach to them instead of
//     starting new ones (and kill any it cannot reattach to).
//   - host stop: every plugin is asked to shut down, then killed.
package plugins

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/host/config"
	"github.com/berth-cri/berth/sdk"
)

// Manager owns every configured plugin.
type Manager struct {
	cfg       *config.Config
	log       *slog.Logger
	socketDir string // go-plugin sockets, 0700
	stateDir  string // reattach records and plugin logs

	mu        sync.Mutex
	instances map[string]*Instance
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// New prepares a manager; Start launches the plugins.
func New(cfg *config.Config, log *slog.Logger) *Manager {
	m := &Manager{
		cfg:       cfg,
		log:       log,
		socketDir: filepath.Join(cfg.Host.RunRoot, "plugins", "sockets"),
		stateDir:  filepath.Join(cfg.Host.RunRoot, "plugins"),
		instances: map[string]*Instance{},
	}
	for _, name := range cfg.PluginNames() {
		spec := cfg.Plugins[name]
		m.instances[name] = newInstance(m, spec)
	}
	return m
}

// Start starts (or reattaches to) every plugin and supervises them until
// Stop. A plugin that fails to start is retried in the background; Start
// returns the first such error so the caller can log it, but it does not
// stop the others.
func (m *Manager) Start(ctx context.Context) error {
	for _, dir := range []string{m.stateDir, m.socketDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create plugin directory: %w", err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("restrict plugin directory: %w", err)
		}
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	for _, inst := range m.list() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := inst.firstStart(ctx); err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	m.removeStaleSockets()
	for _, inst := range m.list() {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			inst.supervise(m.ctx)
		}()
	}
	return firstErr
}

// Stop shuts every plugin down and waits for the supervisors to return.
func (m *Manager) Stop() {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	var wg sync.WaitGroup
	for _, inst := range m.list() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst.shutdown()
		}()
	}
	wg.Wait()
}

// Get returns the named plugin.
func (m *Manager) Get(name string) (*Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	inst, ok := m.instances[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no plugin named %q is configured", name)
	}
	return inst, nil
}

// Runtime returns the runtime plugin serving a RuntimeClass handler ("" is
// the default class) together with the class's options.
func (m *Manager) Runtime(handler string) (*Instance, *config.RuntimeClass, error) {
	if handler == "" {
		handler = m.cfg.Host.DefaultRuntimeClass
	}
	rc, ok := m.cfg.RuntimeClasses[handler]
	if !ok {
		return nil, nil, status.Errorf(codes.InvalidArgument, "runtime handler %q is not configured (known: %v)", handler, m.handlers())
	}
	inst, err := m.Get(rc.Plugin)
	if err != nil {
		return nil, nil, err
	}
	return inst, rc, nil
}

func (m *Manager) handlers() []string {
	var hs []string
	for h := range m.cfg.RuntimeClasses {
		hs = append(hs, h)
	}
	return hs
}

// Storage, Network and Monitor return the plugins serving those roles.
func (m *Manager) Storage() (*Instance, error) { return m.Get(m.cfg.Host.StoragePlugin) }

// Network returns the network plugin.
func (m *Manager) Network() (*Instance, error) { return m.Get(m.cfg.Host.NetworkPlugin) }

// Monitor returns the monitor plugin.
func (m *Manager) Monitor() (*Instance, error) { return m.Get(m.cfg.Host.MonitorPlugin) }

// Snapshots returns the state of every plugin, sorted by name.
func (m *Manager) Snapshots() []Snapshot {
	var out []Snapshot
	for _, inst := range m.list() {
		out = append(out, inst.Snapshot())
	}
	return out
}

func (m *Manager) list() []*Instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Instance, 0, len(m.instances))
	for _, name := range m.cfg.PluginNames() {
		out = append(out, m.instances[name])
	}
	return out
}

// removeStaleSockets deletes sockets left by plugins that died without
// cleaning up (SIGKILL, a failed handshake), keeping those in use.
func (m *Manager) removeStaleSockets() {
	inUse := map[string]bool{}
	for _, inst := range m.list() {
		if a := inst.socketPath(); a != "" {
			inUse[a] = true
		}
	}
	entries, err := os.ReadDir(m.socketDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(m.socketDir, e.Name())
		if !inUse[p] {
			_ = os.Remove(p)
		}
	}
}

// Kind returns a plugin's configured kind.
func kindOf(spec *config.Plugin) sdk.Kind { return sdk.Kind(spec.Kind) }
