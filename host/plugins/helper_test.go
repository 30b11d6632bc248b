package plugins

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-cri/berth/host/config"
	"github.com/berth-cri/berth/sdk"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
	storagev1 "github.com/berth-cri/berth/sdk/proto/storage/v1"
	"google.golang.org/grpc"
)

// The test binary doubles as the plugins under test (go-plugin's
// helper-process pattern): linked or copied under a name of the form
// "plugin-KIND-vVERSIONS[-MODE]", it serves a small plugin of that kind
// speaking those protocol versions ("v1", "v99", "v1_2"). MODE "hanghealth"
// makes Health block once configured.
func TestMain(m *testing.M) {
	if name := filepath.Base(os.Args[0]); strings.HasPrefix(name, "plugin-") {
		serveTestPlugin(name)
		return
	}
	code := m.Run()
	removePluginCgroups()
	os.Exit(code)
}

// removePluginCgroups removes the plugin cgroups the tests created; rmdir
// fails, harmlessly, while a real berth keeps plugins in them.
func removePluginCgroups() {
	mounts, err := cgroupMounts()
	if err != nil {
		return
	}
	for _, root := range mounts {
		dirs, _ := filepath.Glob(filepath.Join(root, "*", pluginCgroupName))
		dirs = append(dirs, filepath.Join(root, pluginCgroupName))
		for _, d := range dirs {
			_ = os.Remove(d)
		}
	}
}

func serveTestPlugin(name string) {
	parts := strings.Split(name, "-")
	kind := sdk.Kind(parts[1])
	var versions []int
	for _, v := range strings.Split(strings.TrimPrefix(parts[2], "v"), "_") {
		n, err := strconv.Atoi(v)
		if err != nil {
			panic(err)
		}
		versions = append(versions, n)
	}
	mode := ""
	if len(parts) > 3 {
		mode = parts[3]
	}
	p := &testPlugin{info: sdk.Info{
		Name: "test", Kind: kind, PluginVersion: "9.9.9", ProtocolVersions: versions,
		Capabilities: []sdk.Capability{sdk.CapExec},
	}, mode: mode}
	switch kind {
	case sdk.KindRuntime:
		sdk.Serve(p, kind, func(s *grpc.Server) { runtimev1.RegisterRuntimeServer(s, p) })
	case sdk.KindStorage:
		sdk.Serve(p, kind, func(s *grpc.Server) { storagev1.RegisterStorageServer(s, &storagev1.UnimplementedStorageServer{}) })
	default:
		panic("unsupported test plugin kind " + string(kind))
	}
}

type testPlugin struct {
	runtimev1.UnimplementedRuntimeServer
	info       sdk.Info
	mode       string
	mu         sync.Mutex
	configured string
	healths    int
}

func (p *testPlugin) Info() sdk.Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := p.info
	i.Attributes = map[string]string{"config": p.configured, "pid": strconv.Itoa(os.Getpid())}
	return i
}

func (p *testPlugin) Configure(_ context.Context, c sdk.Config) error {
	b, _ := json.Marshal(map[string]any{"raw": c.Raw, "protocol": c.ProtocolVersion, "state_dir": c.StateDir})
	p.mu.Lock()
	p.configured = string(b)
	p.mu.Unlock()
	return nil
}

func (p *testPlugin) Health(ctx context.Context) sdk.Health {
	p.mu.Lock()
	p.healths++
	n := p.healths
	p.mu.Unlock()
	// The first check is the host's at start; hang on the later ones.
	if p.mode == "hanghealth" && n > 1 {
		<-ctx.Done()
	}
	return sdk.Health{Healthy: true}
}

// State answers so tests can make a kind-specific call through the host.
func (p *testPlugin) State(_ context.Context, r *runtimev1.StateRequest) (*runtimev1.StateResponse, error) {
	return &runtimev1.StateResponse{Status: "running", Pid: int32(os.Getpid()), Bundle: r.GetContainerId()}, nil
}

// pluginBinary places the test binary under a plugin name in dir.
func pluginBinary(t *testing.T, dir, name string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, name)
	if err := os.Link(self, dst); err == nil {
		return dst
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// testConfig is a config with one runtime plugin named "rt" at binary, and
// the other roles served by a storage plugin (they must exist to validate).
func testConfig(t *testing.T, binary string, edit func(*config.Plugin)) *config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Host.Root = filepath.Join(dir, "root")
	cfg.Host.RunRoot = filepath.Join(dir, "run")
	cfg.Host.Listen = filepath.Join(dir, "berth.sock")
	rt := &config.Plugin{Path: binary, Kind: "runtime", Config: map[string]any{"answer": 42}}
	if edit != nil {
		edit(rt)
	}
	cfg.Plugins = map[string]*config.Plugin{"rt": rt}
	cfg.RuntimeClasses = map[string]*config.RuntimeClass{"runc": {Plugin: "rt"}}
	cfg.Host.DefaultRuntimeClass = "runc"
	// Roles are validated by config.Parse; tests that need them add them.
	cfg.Host.StoragePlugin, cfg.Host.NetworkPlugin, cfg.Host.MonitorPlugin = "", "", ""
	for name, p := range cfg.Plugins {
		p.Name = name
	}
	return cfg
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
	return 0
}

func pidAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}
