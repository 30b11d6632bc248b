package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const valid = `
[host]
listen = "/run/x/berth.sock"
root = "/var/lib/x"
runroot = "/run/x"

[plugins.runc]
path = "berth-runc"
kind = "runtime"
[plugins.runc.config]
anything = { goes = ["here"] }

[plugins.overlay]
path = "/opt/berth-overlay"
kind = "storage"
sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

[plugins.cni]
path = "berth-cni"
kind = "network"

[plugins.monitor]
path = "berth-monitor"
kind = "monitor"
protocol = 1

[runtime_classes.runc]
plugin = "runc"
[runtime_classes.runc.config]
binary = "/usr/sbin/runc"
`

func TestParseValid(t *testing.T) {
	cfg, err := Parse("plugins.toml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Host.LogLevel; got != "info" {
		t.Errorf("default log level = %q, want info", got)
	}
	if got := cfg.Plugins["overlay"].Name; got != "overlay" {
		t.Errorf("plugin name = %q", got)
	}
	if got := cfg.RuntimeClasses["runc"].Config["binary"]; got != "/usr/sbin/runc" {
		t.Errorf("runtime class config = %v", got)
	}
	if got := cfg.ProtocolVersions(cfg.Plugins["runc"]); len(got) != len(HostProtocolVersions) {
		t.Errorf("unpinned plugin offers %v", got)
	}
	cfg.Host.PluginDir = "/usr/libexec/berth"
	if got := cfg.PluginPath(cfg.Plugins["runc"]); got != "/usr/libexec/berth/berth-runc" {
		t.Errorf("relative plugin path resolved to %q", got)
	}
	if got := cfg.PluginPath(cfg.Plugins["overlay"]); got != "/opt/berth-overlay" {
		t.Errorf("absolute plugin path resolved to %q", got)
	}
}

func TestRepoDefaultConfigIsValid(t *testing.T) {
	if _, err := Load(filepath.Join("..", "..", "plugins.toml")); err != nil {
		t.Fatal(err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		edit     func(string) string
		key      string
		line     int
		contains string
	}{
		{"unknown host key", func(s string) string {
			return strings.Replace(s, `runroot = "/run/x"`, "runroot = \"/run/x\"\nlisten_adress = \"x\"", 1)
		}, "host.listen_adress", 6, "unknown key"},
		{"unknown plugin key", func(s string) string {
			return strings.Replace(s, `kind = "network"`, "kind = \"network\"\nchecksum = \"x\"", 1)
		}, "plugins.cni.checksum", 21, "unknown key"},
		{"unknown top-level table", func(s string) string { return s + "\n[hosts]\nx = 1\n" }, "hosts", 32, "unknown key"},
		{"wrong type", func(s string) string {
			return strings.Replace(s, "protocol = 1", `protocol = "one"`, 1)
		}, "plugins.monitor.protocol", 25, "incompatible types"},
		{"syntax error", func(s string) string { return strings.Replace(s, `kind = "storage"`, `kind = storage`, 1) }, "", 15, "expected value"},
		{"runtime class names missing plugin", func(s string) string {
			return strings.Replace(s, "plugin = \"runc\"", "plugin = \"crun\"", 1)
		}, "runtime_classes.runc.plugin", 28, `plugin "crun" is not defined`},
		{"runtime class names non-runtime plugin", func(s string) string {
			return strings.Replace(s, "plugin = \"runc\"", "plugin = \"cni\"", 1)
		}, "runtime_classes.runc.plugin", 28, "is a network plugin, not a runtime plugin"},
		{"two plugins at one path", func(s string) string {
			return strings.Replace(s, `path = "berth-cni"`, `path = "berth-runc"`, 1)
		}, "plugins.runc.path", 8, "use the same binary"},
		{"unknown kind", func(s string) string {
			return strings.Replace(s, `kind = "monitor"`, `kind = "supervisor"`, 1)
		}, "plugins.monitor.kind", 24, "unknown plugin kind"},
		{"bad sha256", func(s string) string { return strings.Replace(s, `sha256 = "0123`, `sha256 = "XY23`, 1) }, "plugins.overlay.sha256", 16, "64 lower-case hex"},
		{"unsupported protocol", func(s string) string { return strings.Replace(s, "protocol = 1", "protocol = 7", 1) }, "plugins.monitor.protocol", 25, "protocol 7 is not spoken"},
		{"missing path", func(s string) string { return strings.Replace(s, `path = "berth-cni"`+"\n", "", 1) }, "plugins.cni.path", 18, "missing plugin path"},
		{"relative root", func(s string) string { return strings.Replace(s, `root = "/var/lib/x"`, `root = "var/lib/x"`, 1) }, "host.root", 4, "absolute path"},
		{"bad log level", func(s string) string { return strings.Replace(s, "[host]\n", "[host]\nlog_level = \"loud\"\n", 1) }, "host.log_level", 3, "unknown log level"},
		{"bad cgroup driver", func(s string) string {
			return strings.Replace(s, "[host]\n", "[host]\ncgroup_driver = \"cgroupv3\"\n", 1)
		}, "host.cgroup_driver", 3, "unknown cgroup driver"},
		{"default runtime class missing", func(s string) string {
			return strings.Replace(s, "[host]\n", "[host]\ndefault_runtime_class = \"kata\"\n", 1)
		}, "host.default_runtime_class", 3, `runtime class "kata" is not defined`},
		{"storage plugin missing", func(s string) string {
			return strings.Replace(s, "[host]\n", "[host]\nstorage_plugin = \"zfs\"\n", 1)
		}, "host.storage_plugin", 3, `plugin "zfs" is not defined`},
		{"monitor plugin of wrong kind", func(s string) string {
			return strings.Replace(s, "[host]\n", "[host]\nmonitor_plugin = \"runc\"\n", 1)
		}, "host.monitor_plugin", 3, "is a runtime plugin, not a monitor plugin"},
		{"bad handler name", func(s string) string {
			return strings.Replace(s, "[runtime_classes.runc]", "[runtime_classes.Runc_Fast]", 1)
		}, "runtime_classes.Runc_Fast", 27, "DNS label"},
		{"no runtime classes", func(s string) string { return s[:strings.Index(s, "[runtime_classes.runc]")] }, "runtime_classes", 0, "at least one runtime class"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("plugins.toml", []byte(tc.edit(valid)))
			if err == nil {
				t.Fatal("no error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is %T, not *config.Error", err, err)
			}
			if tc.key != "" && ce.Key != tc.key {
				t.Errorf("key = %q, want %q (%v)", ce.Key, tc.key, err)
			}
			if ce.Line != tc.line {
				t.Errorf("line = %d, want %d (%v)", ce.Line, tc.line, err)
			}
			if !strings.Contains(err.Error(), tc.contains) || !strings.HasPrefix(err.Error(), "plugins.toml") {
				t.Errorf("error %q does not start with the file and contain %q", err, tc.contains)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	cfg, err := Parse("a.toml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Encode()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("b.toml", out)
	if err != nil {
		t.Fatalf("re-parse of encoded config: %v\n%s", err, out)
	}
	if again.Host != cfg.Host || len(again.Plugins) != len(cfg.Plugins) {
		t.Fatalf("round trip changed the config:\n%s", out)
	}
}
