package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	monitorv1 "github.com/berth-cri/berth/sdk/proto/monitor/v1"
	networkv1 "github.com/berth-cri/berth/sdk/proto/network/v1"
	pluginv1 "github.com/berth-cri/berth/sdk/proto/plugin/v1"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
	storagev1 "github.com/berth-cri/berth/sdk/proto/storage/v1"
)

// Info is a plugin's identity, answered by the Plugin.Info RPC and by
// running the binary with the single argument "describe".
type Info struct {
	Name          string
	Kind          Kind
	PluginVersion string
	// ProtocolVersions defaults to SupportedProtocolVersions.
	ProtocolVersions []int
	Capabilities     []Capability
	Attributes       map[string]string
}

// Proto converts the Info to its wire form.
func (i Info) Proto() *pluginv1.InfoResponse {
	r := &pluginv1.InfoResponse{
		Name:          i.Name,
		Kind:          i.Kind.Proto(),
		PluginVersion: i.PluginVersion,
		SdkVersion:    Version,
		Capabilities:  append([]string(nil), i.Capabilities...),
		Attributes:    i.Attributes,
	}
	for _, v := range i.protocolVersions() {
		r.ProtocolVersions = append(r.ProtocolVersions, int32(v))
	}
	return r
}

func (i Info) protocolVersions() []int {
	if len(i.ProtocolVersions) == 0 {
		return SupportedProtocolVersions
	}
	return i.ProtocolVersions
}

// Config is what the host hands a plugin in Configure.
type Config struct {
	// Raw is the plugin's `config` table from plugins.toml as a JSON object
	// ("{}" when absent). Decode it with json.Unmarshal, rejecting unknown
	// fields so that a typo in plugins.toml is reported.
	Raw             json.RawMessage
	StateDir        string
	RunDir          string
	ProtocolVersion int
	LogLevel        string
	CgroupDriver    string
	// Logger is the plugin's logger: its lines reach the host's log and the
	// plugin's own log file. Use it rather than writing to stderr.
	Logger hclog.Logger
}

// Health is a plugin's answer to a health check.
type Health struct {
	Healthy bool
	Reason  string // CamelCase, for example "RuntimeBinaryMissing"
	Message string
}

// Healthy is the Health of a plugin with nothing to report.
var Healthy = Health{Healthy: true}

// Base is what every plugin implements, whatever its kind.
type Base interface {
	Info() Info
	// Configure is called after every (re)start, before any other call
	// except Info and Health. An error makes the host restart the plugin.
	Configure(ctx context.Context, cfg Config) error
	Health(ctx context.Context) Health
}

// RuntimePlugin is what a runtime plugin implements. Embed
// runtimev1.UnimplementedRuntimeServer for the RPCs it does not implement.
type RuntimePlugin interface {
	Base
	runtimev1.RuntimeServer
}

// StoragePlugin is what a storage plugin implements.
type StoragePlugin interface {
	Base
	storagev1.StorageServer
}

// NetworkPlugin is what a network plugin implements.
type NetworkPlugin interface {
	Base
	networkv1.NetworkServer
}

// MonitorPlugin is what a monitor plugin implements.
type MonitorPlugin interface {
	Base
	monitorv1.MonitorServer
}

// ServeRuntime serves a runtime plugin; it returns when the host stops it.
func ServeRuntime(p RuntimePlugin) {
	Serve(p, KindRuntime, func(s *grpc.Server) { runtimev1.RegisterRuntimeServer(s, p) })
}

// ServeStorage serves a storage plugin.
func ServeStorage(p StoragePlugin) {
	Serve(p, KindStorage, func(s *grpc.Server) { storagev1.RegisterStorageServer(s, p) })
}

// ServeNetwork serves a network plugin.
func ServeNetwork(p NetworkPlugin) {
	Serve(p, KindNetwork, func(s *grpc.Server) { networkv1.RegisterNetworkServer(s, p) })
}

// ServeMonitor serves a monitor plugin.
func ServeMonitor(p MonitorPlugin) {
	Serve(p, KindMonitor, func(s *grpc.Server) { monitorv1.RegisterMonitorServer(s, p) })
}

// Serve serves a plugin of any kind; register adds the kind's service. The
// typed Serve* functions are preferred. When the host stops the plugin, Serve
// calls its Close method if it has one (io.Closer), then returns.
//
// Run with the single argument "describe", the binary prints its Info as JSON
// and exits without serving, so tools can inspect a plugin cheaply.
func Serve(p Base, kind Kind, register func(*grpc.Server)) {
	info := p.Info()
	if info.Kind != kind {
		fmt.Fprintf(os.Stderr, "berth sdk: plugin %q says it is a %s plugin but is served as %s\n", info.Name, info.Kind, kind)
		os.Exit(2)
	}
	if len(os.Args) == 2 && os.Args[1] == "describe" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(describe(info))
		return
	}
	// A host that dies must not take its plugins with it through SIGPIPE on
	// their log writes: monitors are meant to outlive it, and any plugin can
	// be reattached.
	signal.Ignore(syscall.SIGPIPE)
	// go-plugin's host parses JSON log lines from our stderr and re-emits
	// them under the plugin's name in the host log.
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       info.Name,
		Level:      hclog.LevelFromString(envOr("BERTH_PLUGIN_LOG_LEVEL", "info")),
		Output:     logOutput(),
		JSONFormat: true,
	})
	versioned := make(map[int]plugin.PluginSet)
	for _, v := range info.protocolVersions() {
		versioned[v] = plugin.PluginSet{string(kind): &grpcPlugin{register: func(s *grpc.Server) {
			pluginv1.RegisterPluginServer(s, &baseServer{p: p, log: logger})
			register(s)
		}}}
	}
	// Start-up touched much of the binary; most plugins then idle.
	TrimExecutablePages()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: versioned,
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           logger,
	})
	// The host asked us to stop.
	if c, ok := p.(io.Closer); ok {
		if err := c.Close(); err != nil {
			logger.Error("close", "error", err)
		}
	}
}

// logOutput is stderr (which the host reads and re-emits) plus, when the
// host names one in BERTH_PLUGIN_LOG_FILE, a file of the plugin's own, so a
// plugin keeps a log while no host is there to read its stderr.
func logOutput() io.Writer {
	path := os.Getenv("BERTH_PLUGIN_LOG_FILE")
	if path == "" {
		return os.Stderr
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth sdk: cannot open log file: %v\n", err)
		return os.Stderr
	}
	if st, err := f.Stat(); err == nil && st.Size() > maxLogFile {
		// Keep one previous generation; the size check runs at each start.
		_ = os.Rename(path, path+".1")
		_ = f.Close()
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
			return os.Stderr
		}
	}
	return &teeWriter{file: f, stderr: os.Stderr}
}

const maxLogFile = 16 << 20

// teeWriter writes to the file and to stderr, ignoring stderr errors (EPIPE
// once the host is gone).
type teeWriter struct {
	mu     sync.Mutex
	file   *os.File
	stderr io.Writer
}

func (t *teeWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, _ = t.stderr.Write(p)
	return t.file.Write(p)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type description struct {
	Name             string            `json:"name"`
	Kind             Kind              `json:"kind"`
	PluginVersion    string            `json:"plugin_version"`
	SDKVersion       string            `json:"sdk_version"`
	ProtocolVersions []int             `json:"protocol_versions"`
	Capabilities     []string          `json:"capabilities"`
	Attributes       map[string]string `json:"attributes,omitempty"`
}

func describe(i Info) description {
	caps := i.Capabilities
	if caps == nil {
		caps = []string{}
	}
	return description{i.Name, i.Kind, i.PluginVersion, Version, i.protocolVersions(), caps, i.Attributes}
}

// baseServer adapts Base to the berth.plugin.v1.Plugin service.
type baseServer struct {
	pluginv1.UnimplementedPluginServer
	p   Base
	log hclog.Logger
}

func (b *baseServer) Info(context.Context, *pluginv1.InfoRequest) (*pluginv1.InfoResponse, error) {
	return b.p.Info().Proto(), nil
}

func (b *baseServer) Configure(ctx context.Context, r *pluginv1.ConfigureRequest) (*pluginv1.ConfigureResponse, error) {
	raw := json.RawMessage(r.GetConfigJson())
	if len(raw) == 0 {
		raw = json.RawMessage("{}")
	}
	err := b.p.Configure(ctx, Config{
		Raw:             raw,
		StateDir:        r.GetStateDir(),
		RunDir:          r.GetRunDir(),
		ProtocolVersion: int(r.GetProtocolVersion()),
		LogLevel:        r.GetLogLevel(),
		CgroupDriver:    r.GetCgroupDriver(),
		Logger:          b.log,
	})
	if err != nil {
		return nil, err
	}
	return &pluginv1.ConfigureResponse{}, nil
}

func (b *baseServer) Health(ctx context.Context, _ *pluginv1.HealthRequest) (*pluginv1.HealthResponse, error) {
	h := b.p.Health(ctx)
	return &pluginv1.HealthResponse{Healthy: h.Healthy, Reason: h.Reason, Message: h.Message}, nil
}
