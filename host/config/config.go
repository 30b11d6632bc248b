// Package config reads plugins.toml: the host's settings, the plugins it
// starts, and the runtime classes that map a RuntimeClass handler to a
// runtime plugin. Decoding is strict: an unknown key, a wrong type or a
// reference to a missing plugin is an error naming the key and its line.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/berth-cri/berth/sdk"
)

// DefaultPath is where the daemon reads its config unless --config says otherwise.
const DefaultPath = "/etc/berth/plugins.toml"

// Config is plugins.toml.
type Config struct {
	Host           Host                     `toml:"host" json:"host"`
	Plugins        map[string]*Plugin       `toml:"plugins" json:"plugins"`
	RuntimeClasses map[string]*RuntimeClass `toml:"runtime_classes" json:"runtime_classes"`

	// Path is the file the config was read from ("" for defaults only).
	Path string `toml:"-" json:"path"`
}

// Host holds the daemon's own settings.
type Host struct {
	Listen   string `toml:"listen" json:"listen"`
	Root     string `toml:"root" json:"root"`
	RunRoot  string `toml:"runroot" json:"runroot"`
	LogLevel string `toml:"log_level" json:"log_level"`
	// CgroupDriver is "cgroupfs" or "systemd".
	CgroupDriver string `toml:"cgroup_driver" json:"cgroup_driver"`
	// StreamAddress and StreamPort are where the CRI streaming server
	// (exec, attach, port-forward) listens. Port 0 picks a free port.
	StreamAddress string `toml:"stream_address" json:"stream_address"`
	StreamPort    int    `toml:"stream_port" json:"stream_port"`
	// PluginDir resolves relative plugin paths; empty means the directory
	// holding the berth executable.
	PluginDir string `toml:"plugin_dir" json:"plugin_dir"`
	// DefaultRuntimeClass serves pods whose RuntimeClass handler is empty.
	DefaultRuntimeClass string `toml:"default_runtime_class" json:"default_runtime_class"`
	// StoragePlugin, NetworkPlugin and MonitorPlugin name the plugins that
	// serve images and root filesystems, pod networking, and supervision.
	StoragePlugin string `toml:"storage_plugin" json:"storage_plugin"`
	NetworkPlugin string `toml:"network_plugin" json:"network_plugin"`
	MonitorPlugin string `toml:"monitor_plugin" json:"monitor_plugin"`
}

// Plugin is one [plugins.NAME] table.
type Plugin struct {
	Name string `toml:"-" json:"-"`
	// Path of the executable; relative paths are resolved against host.plugin_dir.
	Path string `toml:"path" json:"path"`
	// Kind is runtime, storage, network or monitor.
	Kind string `toml:"kind" json:"kind"`
	// SHA256 of the executable, hex. When set, a binary with another digest
	// is refused before it is started.
	SHA256 string `toml:"sha256" json:"sha256"`
	// Protocol pins the protocol major; 0 offers every major the host speaks.
	Protocol int `toml:"protocol" json:"protocol"`
	// Config is handed to the plugin as is (as JSON) in Configure.
	Config map[string]any `toml:"config" json:"config"`
}

// RuntimeClass is one [runtime_classes.HANDLER] table.
type RuntimeClass struct {
	Handler string         `toml:"-" json:"-"`
	Plugin  string         `toml:"plugin" json:"plugin"`
	Config  map[string]any `toml:"config" json:"config"`
}

// HostProtocolVersions are the plugin protocol majors this host speaks.
var HostProtocolVersions = sdk.SupportedProtocolVersions

// Default returns the built-in settings that a config file overrides.
func Default() *Config {
	return &Config{
		Host: Host{
			Listen:              "/run/berth/berth.sock",
			Root:                "/var/lib/berth",
			RunRoot:             "/run/berth",
			LogLevel:            "info",
			CgroupDriver:        "cgroupfs",
			StreamAddress:       "127.0.0.1",
			StreamPort:          0,
			DefaultRuntimeClass: "runc",
			StoragePlugin:       "overlay",
			NetworkPlugin:       "cni",
			MonitorPlugin:       "monitor",
		},
	}
}

// Error is a config error tied to a key and, when known, a line.
type Error struct {
	File string
	Key  string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
}

// Load reads and validates a config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates config data; path is used in messages.
func Parse(path string, data []byte) (*Config, error) {
	cfg := Default()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: path, Key: pe.LastKey, Line: pe.Position.Line, Msg: pe.Message}
		}
		// Type mismatches are plain errors: "toml: line N (last key "k"): msg".
		if m := typeErrRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, &Error{File: path, Key: m[2], Line: line, Msg: m[3]}
		}
		return nil, &Error{File: path, Msg: err.Error()}
	}
	lines := newLineIndex(data)
	if und := md.Undecoded(); len(und) > 0 {
		for _, k := range und {
			// Plugin and runtime class config tables are free-form.
			if len(k) >= 3 && (k[0] == "plugins" || k[0] == "runtime_classes") && k[2] == "config" {
				continue
			}
			return nil, &Error{File: path, Key: k.String(), Line: lines.find(k), Msg: "unknown key"}
		}
	}
	cfg.Path = path
	if err := cfg.validate(func(key ...string) int { return lines.find(key) }); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.File = path
		}
		return nil, err
	}
	return cfg, nil
}

var (
	typeErrRE = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)
	nameRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$`)
	sha256RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	logLevels = []string{"trace", "debug", "info", "warn", "error"}
)

// Validate checks a config built in code (Parse validates what it reads).
func (c *Config) Validate() error {
	return c.validate(func(...string) int { return 0 })
}

func (c *Config) validate(line func(key ...string) int) error {
	bad := func(msg string, key ...string) error {
		return &Error{File: c.Path, Key: strings.Join(key, "."), Line: line(key...), Msg: msg}
	}
	h := &c.Host
	for _, p := range []struct{ key, val string }{{"listen", h.Listen}, {"root", h.Root}, {"runroot", h.RunRoot}} {
		if !filepath.IsAbs(p.val) {
			return bad(fmt.Sprintf("must be an absolute path, got %q", p.val), "host", p.key)
		}
	}
	if h.PluginDir != "" && !filepath.IsAbs(h.PluginDir) {
		return bad(fmt.Sprintf("must be an absolute path, got %q", h.PluginDir), "host", "plugin_dir")
	}
	if !slices.Contains(logLevels, h.LogLevel) {
		return bad(fmt.Sprintf("unknown log level %q (want one of %s)", h.LogLevel, strings.Join(logLevels, ", ")), "host", "log_level")
	}
	if h.CgroupDriver != "cgroupfs" && h.CgroupDriver != "systemd" {
		return bad(fmt.Sprintf("unknown cgroup driver %q (want cgroupfs or systemd)", h.CgroupDriver), "host", "cgroup_driver")
	}
	if h.StreamPort < 0 || h.StreamPort > 65535 {
		return bad(fmt.Sprintf("port %d out of range", h.StreamPort), "host", "stream_port")
	}
	if h.StreamAddress == "" {
		return bad("must not be empty", "host", "stream_address")
	}

	paths := map[string]string{}
	for _, name := range sortedKeys(c.Plugins) {
		p := c.Plugins[name]
		if p == nil {
			return bad("empty plugin table", "plugins", name)
		}
		p.Name = name
		if !nameRE.MatchString(name) {
			return bad("plugin name must be lower-case letters, digits, '-' or '_'", "plugins", name)
		}
		if p.Path == "" {
			return bad("missing plugin path", "plugins", name, "path")
		}
		if _, err := sdk.ParseKind(p.Kind); err != nil {
			return bad(err.Error(), "plugins", name, "kind")
		}
		if p.SHA256 != "" && !sha256RE.MatchString(p.SHA256) {
			return bad("must be 64 lower-case hex digits", "plugins", name, "sha256")
		}
		if p.Protocol != 0 && !slices.Contains(HostProtocolVersions, p.Protocol) {
			return bad(fmt.Sprintf("protocol %d is not spoken by this host (it speaks %v)", p.Protocol, HostProtocolVersions), "plugins", name, "protocol")
		}
		if _, err := json.Marshal(p.Config); err != nil {
			return bad(fmt.Sprintf("cannot be passed to the plugin: %v", err), "plugins", name, "config")
		}
		abs := c.PluginPath(p)
		if other, ok := paths[abs]; ok {
			return bad(fmt.Sprintf("plugins %q and %q use the same binary %s", other, name, abs), "plugins", name, "path")
		}
		paths[abs] = name
	}

	if len(c.RuntimeClasses) == 0 {
		return bad("at least one runtime class is required", "runtime_classes")
	}
	for _, handler := range sortedKeys(c.RuntimeClasses) {
		rc := c.RuntimeClasses[handler]
		if rc == nil {
			return bad("empty runtime class table", "runtime_classes", handler)
		}
		rc.Handler = handler
		if !nameRE.MatchString(handler) {
			return bad("handler must be a DNS label", "runtime_classes", handler)
		}
		if err := c.refer(rc.Plugin, sdk.KindRuntime); err != "" {
			return bad(err, "runtime_classes", handler, "plugin")
		}
		if _, err := json.Marshal(rc.Config); err != nil {
			return bad(fmt.Sprintf("cannot be passed to the plugin: %v", err), "runtime_classes", handler, "config")
		}
	}
	if _, ok := c.RuntimeClasses[h.DefaultRuntimeClass]; !ok {
		return bad(fmt.Sprintf("runtime class %q is not defined in [runtime_classes]", h.DefaultRuntimeClass), "host", "default_runtime_class")
	}
	for _, r := range []struct {
		key, name string
		kind      sdk.Kind
	}{{"storage_plugin", h.StoragePlugin, sdk.KindStorage}, {"network_plugin", h.NetworkPlugin, sdk.KindNetwork}, {"monitor_plugin", h.MonitorPlugin, sdk.KindMonitor}} {
		if err := c.refer(r.name, r.kind); err != "" {
			return bad(err, "host", r.key)
		}
	}
	return nil
}

// refer checks that name is a configured plugin of the given kind.
func (c *Config) refer(name string, kind sdk.Kind) string {
	p, ok := c.Plugins[name]
	if !ok {
		return fmt.Sprintf("plugin %q is not defined in [plugins]", name)
	}
	if p.Kind != string(kind) {
		return fmt.Sprintf("plugin %q is a %s plugin, not a %s plugin", name, p.Kind, kind)
	}
	return ""
}

// PluginPath resolves a plugin's executable path.
func (c *Config) PluginPath(p *Plugin) string {
	if filepath.IsAbs(p.Path) {
		return filepath.Clean(p.Path)
	}
	dir := c.Host.PluginDir
	if dir == "" {
		if exe, err := os.Executable(); err == nil {
			dir = filepath.Dir(exe)
		}
	}
	return filepath.Join(dir, p.Path)
}

// ProtocolVersions returns the majors the host offers the plugin.
func (c *Config) ProtocolVersions(p *Plugin) []int {
	if p.Protocol != 0 {
		return []int{p.Protocol}
	}
	return HostProtocolVersions
}

// PluginNames returns the plugin names, sorted.
func (c *Config) PluginNames() []string { return sortedKeys(c.Plugins) }

// Encode writes the effective config as TOML.
func (c *Config) Encode() ([]byte, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
