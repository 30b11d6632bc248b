package monitorplugin

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-cri/berth/plugins/monitor/internal/conmon"
	"github.com/berth-cri/berth/sdk"
	monitorv1 "github.com/berth-cri/berth/sdk/proto/monitor/v1"
)

func TestMain(m *testing.M) {
	if conmon.MaybeRun() {
		return
	}
	os.Exit(m.Run())
}

// runcContainer prepares a busybox bundle running script and returns the
// runc create command for it.
func runcContainer(t *testing.T, dir, id, script string, memLimit int64) (argv []string, cleanup func()) {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("busybox-static is needed")
	}
	runcPath, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc is needed")
	}
	bundle := filepath.Join(dir, "bundle-"+id)
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "tmp"} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bb, 0o755)
	spec := specs.Spec{
		Version: specs.Version, Root: &specs.Root{Path: rootfs},
		Process: &specs.Process{Args: []string{"/bin/busybox", "sh", "-c", script}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{CgroupsPath: "/berth-monitor-test/" + id,
			Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}}},
	}
	if memLimit > 0 {
		spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &memLimit}}
	}
	b, _ := json.Marshal(spec)
	os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644)
	root := filepath.Join(dir, "runc")
	argv = []string{runcPath, "--root", root, "create", "--bundle", bundle, "--pid-file", filepath.Join(dir, "sup-"+id, conmon.FileInitPID), id}
	return argv, func() {
		exec.Command(runcPath, "--root", root, "delete", "--force", id).Run()
		for _, c := range []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd", "unified"} {
			os.Remove(filepath.Join("/sys/fs/cgroup", c, "berth-monitor-test", id))
			os.Remove(filepath.Join("/sys/fs/cgroup", c, "berth-monitor-test"))
		}
	}
}

func startContainer(t *testing.T, dir, id string) {
	t.Helper()
	out, err := exec.Command("runc", "--root", filepath.Join(dir, "runc"), "start", id).CombinedOutput()
	if err != nil {
		t.Fatalf("runc start: %v %s", err, out)
	}
}

func waitExited(t *testing.T, p *Plugin, id string) *monitorv1.StatusResponse {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		st, err := p.Status(context.Background(), &monitorv1.StatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if st.Exited {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("container %s did not exit", id)
	return nil
}

func newPlugin(t *testing.T, state string) *Plugin {
	t.Helper()
	p := New()
	if err := p.Configure(context.Background(), sdk.Config{Raw: json.RawMessage(`{"create_timeout":"10s"}`), StateDir: state}); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIntegrationExitCodeAndLog(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("integration test: needs root and runc")
	}
	dir := t.TempDir()
	p := newPlugin(t, filepath.Join(dir, "state"))
	long := strings.Repeat("x", 20000)
	argv, cleanup := runcContainer(t, dir, "exit3", "echo hello; echo oops >&2; printf "+long+"; echo; printf tail; exit 3", 0)
	t.Cleanup(cleanup)
	logPath := filepath.Join(dir, "ctr.log")
	w, err := p.Watch(context.Background(), &monitorv1.WatchRequest{ContainerId: "exit3", StdioDir: filepath.Join(dir, "sup-exit3"),
		LogPath: logPath, CreateArgv: argv, PidFile: filepath.Join(dir, "sup-exit3", conmon.FileInitPID)})
	if err != nil {
		entries, _ := os.ReadDir(filepath.Join(dir, "sup-exit3"))
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(dir, "sup-exit3", e.Name()))
			t.Logf("%s: %.200s", e.Name(), b)
		}
		t.Fatal(err)
	}
	if w.Pid <= 0 {
		t.Fatalf("pid %d", w.Pid)
	}
	st, _ := p.Status(context.Background(), &monitorv1.StatusRequest{ContainerId: "exit3"})
	if !st.Running || st.Exited {
		t.Errorf("created container: %+v", st)
	}
	startContainer(t, dir, "exit3")
	st = waitExited(t, p, "exit3")
	if st.ExitCode != 3 || st.OomKilled || st.ExitedAtUnixNano == 0 {
		t.Errorf("status %+v", st)
	}
	// A new plugin process (after a restart) knows the same.
	if st2 := waitExited(t, newPlugin(t, filepath.Join(dir, "state")), "exit3"); st2.ExitCode != 3 {
		t.Errorf("after restart: %+v", st2)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr) (P|F) (.*)$`)
	var got []string
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("not a CRI log line: %.80q", l)
		}
		got = append(got, m[2]+" "+m[3]+" "+strings.ReplaceAll(m[4], long[:100], "X100"))
	}
	joined := strings.Join(got, "|")
	for _, want := range []string{"stdout F hello", "stderr F oops", "stdout F tail"} {
		if !strings.Contains(joined, want) {
			t.Errorf("log lacks %q: %.300s", want, joined)
		}
	}
	// The 20000-byte line is split: one partial record of 16 KiB, then the rest.
	partial := 0
	for _, l := range got {
		if strings.HasPrefix(l, "stdout P ") {
			partial++
		}
	}
	if partial != 1 {
		t.Errorf("%d partial records, want 1", partial)
	}
	if _, err := p.Forget(context.Background(), &monitorv1.ForgetRequest{ContainerId: "exit3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Status(context.Background(), &monitorv1.StatusRequest{ContainerId: "exit3"}); err == nil {
		t.Error("status after forget")
	}
}

func TestIntegrationOOMKilled(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("integration test: needs root and runc")
	}
	dir := t.TempDir()
	p := newPlugin(t, filepath.Join(dir, "state"))
	argv, cleanup := runcContainer(t, dir, "oom", "exec dd if=/dev/zero of=/dev/null bs=64M count=1", 16<<20)
	t.Cleanup(cleanup)
	if _, err := p.Watch(context.Background(), &monitorv1.WatchRequest{ContainerId: "oom", StdioDir: filepath.Join(dir, "sup-oom"),
		LogPath: filepath.Join(dir, "oom.log"), CreateArgv: argv, PidFile: filepath.Join(dir, "sup-oom", conmon.FileInitPID)}); err != nil {
		t.Fatal(err)
	}
	startContainer(t, dir, "oom")
	st := waitExited(t, p, "oom")
	if !st.OomKilled || st.ExitCode != 137 {
		t.Errorf("status %+v, want OOM killed with 137", st)
	}
}

func TestIntegrationCreateFailure(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("integration test: needs root and runc")
	}
	dir := t.TempDir()
	p := newPlugin(t, filepath.Join(dir, "state"))
	argv, cleanup := runcContainer(t, dir, "bad", "true", 0)
	t.Cleanup(cleanup)
	os.RemoveAll(filepath.Join(dir, "bundle-bad", "rootfs"))
	_, err := p.Watch(context.Background(), &monitorv1.WatchRequest{ContainerId: "bad", StdioDir: filepath.Join(dir, "sup-bad"),
		LogPath: filepath.Join(dir, "bad.log"), CreateArgv: argv, PidFile: filepath.Join(dir, "sup-bad", conmon.FileInitPID)})
	if err == nil || !strings.Contains(err.Error(), "create container bad") {
		t.Fatalf("create of a broken bundle: %v", err)
	}
}

// TestIntegrationReopenLog: after the log is moved away (rotation),
// ReopenLog returns only once the new file exists, and lines go there.
func TestIntegrationReopenLog(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("integration test: needs root and runc")
	}
	dir := t.TempDir()
	p := newPlugin(t, filepath.Join(dir, "state"))
	argv, cleanup := runcContainer(t, dir, "chatty", "while true; do echo tick; sleep 0.05; done", 0)
	t.Cleanup(cleanup)
	logPath := filepath.Join(dir, "chatty.log")
	if _, err := p.Watch(context.Background(), &monitorv1.WatchRequest{ContainerId: "chatty", StdioDir: filepath.Join(dir, "sup-chatty"),
		LogPath: logPath, CreateArgv: argv, PidFile: filepath.Join(dir, "sup-chatty", conmon.FileInitPID)}); err != nil {
		t.Fatal(err)
	}
	startContainer(t, dir, "chatty")
	for i := 0; i < 5; i++ {
		if err := os.Rename(logPath, logPath+".old"); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ReopenLog(context.Background(), &monitorv1.ReopenLogRequest{ContainerId: "chatty"}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(logPath); err != nil {
			t.Fatalf("round %d: new log not there when ReopenLog returned: %v", i, err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "stdout F tick") {
		t.Errorf("nothing written to the reopened log: %q", b)
	}
	p.Forget(context.Background(), &monitorv1.ForgetRequest{ContainerId: "chatty"}) //nolint:errcheck
}

// TestIntegrationCreateTimeoutUnwatched: a create command that hangs is
// ended by the supervisor itself after the create timeout, even when the
// Watch that started it was given up (its caller went away).
func TestIntegrationCreateTimeoutUnwatched(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("integration test: needs root")
	}
	dir := t.TempDir()
	p := New()
	if err := p.Configure(context.Background(), sdk.Config{Raw: json.RawMessage(`{"create_timeout":"1s"}`), StateDir: filepath.Join(dir, "state")}); err != nil {
		t.Fatal(err)
	}
	sup := filepath.Join(dir, "sup-hang")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := p.Watch(ctx, &monitorv1.WatchRequest{ContainerId: "hang", StdioDir: sup, LogPath: filepath.Join(dir, "hang.log"),
		CreateArgv: []string{"/bin/sleep", "31.5"}, PidFile: filepath.Join(sup, conmon.FileInitPID)})
	if err == nil {
		t.Fatal("Watch of a hanging create returned no error")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(sup, conmon.FileCreateErr))
		if err == nil {
			if !strings.Contains(string(b), "did not finish within 1s") {
				t.Errorf("create error: %q", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the supervisor did not end the hanging create")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if out, _ := exec.Command("pgrep", "-f", "^/bin/sleep 31.5$").Output(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("the hanging create command still runs: %s", out)
	}
	_, _ = p.Forget(context.Background(), &monitorv1.ForgetRequest{ContainerId: "hang"})
}
