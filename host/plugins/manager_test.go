package plugins

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/host/config"
	"github.com/berth-cri/berth/sdk"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

func startManager(t *testing.T, cfg *config.Config) (*Manager, error) {
	t.Helper()
	m := New(cfg, testLogger(t))
	err := m.Start(context.Background())
	t.Cleanup(m.Stop)
	return m, err
}

func TestStartConfigureAndCall(t *testing.T) {
	bin := pluginBinary(t, t.TempDir(), "plugin-runtime-v1")
	m, err := startManager(t, testConfig(t, bin, nil))
	if err != nil {
		t.Fatal(err)
	}
	inst, rc, err := m.Runtime("")
	if err != nil || rc.Handler != "" && rc.Plugin != "rt" {
		t.Fatalf("Runtime(\"\") = %v, %v, %v", inst, rc, err)
	}
	s := inst.Snapshot()
	if s.State != StateRunning || !s.Healthy || s.Protocol != 1 || s.PluginVersion != "9.9.9" || s.PID == 0 {
		t.Fatalf("snapshot = %+v", s)
	}
	var got struct {
		Raw      map[string]any `json:"raw"`
		Protocol int            `json:"protocol"`
		StateDir string         `json:"state_dir"`
	}
	if err := json.Unmarshal([]byte(s.Attributes["config"]), &got); err != nil {
		t.Fatalf("plugin did not report its config: %v (%q)", err, s.Attributes["config"])
	}
	if got.Raw["answer"] != float64(42) || got.Protocol != 1 || !strings.HasPrefix(got.StateDir, m.cfg.Host.Root) {
		t.Fatalf("plugin was configured with %+v", got)
	}
	if !inst.HasCapability(sdk.CapExec) || inst.Require(sdk.CapUpdate) == nil {
		t.Fatal("capabilities not taken from Info")
	}
	if code := status.Code(inst.Require(sdk.CapUpdate)); code != codes.Unimplemented {
		t.Fatalf("Require of a missing capability: code %v", code)
	}
	resp, err := runtimev1.NewRuntimeClient(inst.Conn).State(context.Background(), &runtimev1.StateRequest{ContainerId: "abc"})
	if err != nil || resp.Bundle != "abc" || int(resp.Pid) != s.PID {
		t.Fatalf("State through the host = %v, %v", resp, err)
	}
	// The plugin lives outside the test's cgroup (unified / name=systemd).
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(s.PID) + "/cgroup"); err == nil && os.Geteuid() == 0 {
		if !strings.Contains(string(b), pluginCgroupName) {
			t.Errorf("plugin cgroups do not include %s:\n%s", pluginCgroupName, b)
		}
	}
}

func TestKilledPluginIsRestartedWithin2s(t *testing.T) {
	bin := pluginBinary(t, t.TempDir(), "plugin-runtime-v1")
	m, err := startManager(t, testConfig(t, bin, nil))
	if err != nil {
		t.Fatal(err)
	}
	inst, _ := m.Get("rt")
	client := runtimev1.NewRuntimeClient(inst.Conn)
	for round := 0; round < 3; round++ {
		old := inst.Snapshot().PID
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// A call while the plugin is down fails fast with Unavailable.
		start := time.Now()
		_, err := client.State(context.Background(), &runtimev1.StateRequest{ContainerId: "x"})
		if err != nil {
			if code := status.Code(err); code != codes.Unavailable {
				t.Fatalf("call to a killed plugin: %v (code %v), want Unavailable", err, code)
			}
			if !strings.Contains(err.Error(), `plugin "rt"`) {
				t.Errorf("error does not name the plugin: %v", err)
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("call to a killed plugin took %v", d)
			}
		}
		took := waitFor(t, 2*time.Second, "the plugin to serve again", func() bool {
			s := inst.Snapshot()
			if s.State != StateRunning || s.PID == old {
				return false
			}
			_, err := client.State(context.Background(), &runtimev1.StateRequest{ContainerId: "x"})
			return err == nil
		})
		t.Logf("round %d: serving again %v after kill -9", round, took)
		if pidAlive(old) {
			// Reaped by go-plugin; a zombie would still show in /proc.
			if b, _ := os.ReadFile("/proc/" + strconv.Itoa(old) + "/stat"); strings.Contains(string(b), ") Z") {
				t.Errorf("killed plugin %d left a zombie", old)
			}
		}
	}
	if r := inst.Snapshot().Restarts; r != 3 {
		t.Errorf("restarts = %d, want 3", r)
	}
}

func TestChecksumMismatchIsRefused(t *testing.T) {
	bin := pluginBinary(t, t.TempDir(), "plugin-runtime-v1")
	want := strings.Repeat("ab", 32)
	actual, err := fileSHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	_, err = startManager(t, testConfig(t, bin, func(p *config.Plugin) { p.SHA256 = want }))
	if err == nil {
		t.Fatal("plugin with a wrong checksum was started")
	}
	for _, s := range []string{bin, want, actual, `plugin "rt"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(bin), "*")); len(matches) != 1 {
		t.Errorf("unexpected files: %v", matches)
	}
}

func TestChecksumMatchIsStarted(t *testing.T) {
	bin := pluginBinary(t, t.TempDir(), "plugin-runtime-v1")
	sum, err := fileSHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := startManager(t, testConfig(t, bin, func(p *config.Plugin) { p.SHA256 = sum })); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownProtocolVersionIsRefused(t *testing.T) {
	bin := pluginBinary(t, t.TempDir(), "plugin-runtime-v99")
	m, err := startManager(t, testConfig(t, bin, nil))
	if err == nil {
		t.Fatal("plugin speaking only protocol 99 was accepted")
	}
	for _, s := range []string{`plugin "rt"`, bin, "Plugin version: 99", "[1]"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
	inst, _ := m.Get("rt")
	if s := inst.Snapshot(); s.State == StateRunning || s.Healthy || s.Reason != "PluginNotRunning" {
		t.Errorf("snapshot of a refused plugin: %+v", s)
	}
	// Calls fail fast with Unavailable and say why.
	_, err = runtimev1.NewRuntimeClient(inst.Conn).State(context.Background(), &runtimev1.StateRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "incompatible API version") {
		t.Errorf("call to a refused plugin: %v", err)
	}
}

func TestNegotiatesHighestCommonVersion(t *testing.T) {
	// A plugin speaking 1 and 2 against a host speaking only 1 gets 1.
	bin := pluginBinary(t, t.TempDir(), "plugin-runtime-v1_2")
	m, err := startManager(t, testConfig(t, bin, nil))
	if err != nil {
		t.Fatal(err)
	}
	inst, _ := m.Get("rt")
	if v := inst.Snapshot().Protocol; v != 1 {
		t.Fatalf("negotiated %d, want 1", v)
	}
}

func TestKindMismatchIsRefused(t *testing.T) {
	bin := pluginBinary(t, t.TempDir(), "plugin-storage-v1")
	_, err := startManager(t, testConfig(t, bin, nil))
	if err == nil || !strings.Contains(err.Error(), `is a "storage" plugin, but plugins.toml declares kind "runtime"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestHungPluginIsRestarted(t *testing.T) {
	// Restored by a cleanup registered before the manager's, so it runs after Stop.
	oldI, oldT := healthInterval, healthTimeout
	t.Cleanup(func() { healthInterval, healthTimeout = oldI, oldT })
	healthInterval, healthTimeout = 100*time.Millisecond, 100*time.Millisecond
	bin := pluginBinary(t, t.TempDir(), "plugin-runtime-v1-hanghealth")
	m, err := startManager(t, testConfig(t, bin, nil))
	if err != nil {
		t.Fatal(err)
	}
	inst, _ := m.Get("rt")
	first := inst.Snapshot().PID
	waitFor(t, 5*time.Second, "a restart after failed health checks", func() bool {
		s := inst.Snapshot()
		return s.Restarts > 0 && s.State == StateRunning && s.PID != first
	})
	waitFor(t, 2*time.Second, "the hung process to be killed", func() bool { return !pidAlive(first) || isZombie(first) })
}

func isZombie(pid int) bool {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return strings.Contains(string(b), ") Z")
}

// TestReattachAfterHostCrash abandons a manager without stopping it, as a
// host killed with SIGKILL would, and checks that the next host adopts the
// same plugin process instead of starting another.
func TestReattachAfterHostCrash(t *testing.T) {
	bin := pluginBinary(t, t.TempDir(), "plugin-runtime-v1")
	cfg := testConfig(t, bin, nil)
	crashed := New(cfg, testLogger(t))
	if err := crashed.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	crashed.cancel() // stop supervising, keep the process: the "crash"
	inst, _ := crashed.Get("rt")
	pid := inst.Snapshot().PID

	m, err := startManager(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := m.Get("rt")
	if got := again.Snapshot().PID; got != pid {
		t.Fatalf("new host runs pid %d, want the reattached %d", got, pid)
	}
	if _, err := runtimev1.NewRuntimeClient(again.Conn).State(context.Background(), &runtimev1.StateRequest{}); err != nil {
		t.Fatalf("call after reattach: %v", err)
	}
	m.Stop()
	waitFor(t, 5*time.Second, "the plugin to stop with the new host", func() bool { return !pidAlive(pid) || isZombie(pid) })
	if _, err := os.Stat(again.reattachFile()); !os.IsNotExist(err) {
		t.Errorf("reattach record left after stop: %v", err)
	}
}

// TestStaleRecordIsNotTrusted: a record naming a PID that now belongs to
// another process must neither reattach nor kill it.
func TestStaleRecordIsNotTrusted(t *testing.T) {
	bin := pluginBinary(t, t.TempDir(), "plugin-runtime-v1")
	cfg := testConfig(t, bin, nil)
	if err := os.MkdirAll(filepath.Join(cfg.Host.RunRoot, "plugins"), 0o700); err != nil {
		t.Fatal(err)
	}
	rec := reattachRecord{PID: os.Getpid(), StartTime: 1, Socket: "/nonexistent", Protocol: 1, Path: bin}
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(cfg.Host.RunRoot, "plugins", "rt.reattach.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := startManager(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	inst, _ := m.Get("rt")
	if s := inst.Snapshot(); s.PID == os.Getpid() || s.State != StateRunning {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestStopStopsEveryPlugin(t *testing.T) {
	bin := pluginBinary(t, t.TempDir(), "plugin-runtime-v1")
	m, err := startManager(t, testConfig(t, bin, nil))
	if err != nil {
		t.Fatal(err)
	}
	inst, _ := m.Get("rt")
	pid := inst.Snapshot().PID
	m.Stop()
	waitFor(t, 5*time.Second, "the plugin to exit", func() bool { return !pidAlive(pid) || isZombie(pid) })
	if s := inst.Snapshot(); s.State != StateStopped {
		t.Fatalf("state after stop: %s", s.State)
	}
	entries, _ := os.ReadDir(m.socketDir)
	if len(entries) != 0 {
		t.Errorf("sockets left after stop: %v", entries)
	}
}
