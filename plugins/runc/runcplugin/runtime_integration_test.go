package runcplugin

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-cri/berth/plugins/runc/internal/sandbox"
	"github.com/berth-cri/berth/sdk"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

func TestMain(m *testing.M) {
	if sandbox.MaybeRunInit() {
		return
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: real namespaces and runc")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

func mounted(path string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(b), " "+path+" ")
}

func TestIntegrationSandboxAndContainer(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	p := New()
	ctx := context.Background()
	if err := p.Configure(ctx, sdk.Config{Raw: json.RawMessage(`{"binary":"runc"}`), RunDir: filepath.Join(dir, "run"), StateDir: filepath.Join(dir, "state")}); err != nil {
		t.Fatal(err)
	}
	if h := p.Health(ctx); !h.Healthy {
		t.Fatalf("health %+v", h)
	}
	podSpec, _ := json.Marshal(specs.Spec{Hostname: "berth-pod", Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.PIDNamespace}}}})
	sb, err := p.CreateSandbox(ctx, &runtimev1.CreateSandboxRequest{SandboxId: "pod1", SpecJson: podSpec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{SandboxId: "pod1", Handle: sb.Handle}) //nolint:errcheck
	})
	for _, typ := range []string{"net", "ipc", "uts", "pid"} {
		if path := sb.NamespacePaths[typ]; path == "" || !mounted(path) {
			t.Fatalf("%s namespace not pinned: %q", typ, path)
		}
	}
	if sb.InitPid <= 0 || !sandbox.InitAlive(int(sb.InitPid)) {
		t.Fatalf("pod init %d not running", sb.InitPid)
	}
	out, err := exec.Command("nsenter", "--uts="+sb.NamespacePaths["uts"], "hostname").Output()
	if err != nil || strings.TrimSpace(string(out)) != "berth-pod" {
		t.Errorf("hostname in the pod: %q %v", out, err)
	}
	out, err = exec.Command("nsenter", "--net="+sb.NamespacePaths["net"], "cat", "/sys/class/net/lo/operstate").Output()
	if err != nil || strings.TrimSpace(string(out)) == "down" {
		t.Errorf("loopback in the pod: %q %v", out, err)
	}

	// A container joining the pod's namespaces, created the way the monitor
	// creates it: by running the create command as the parent.
	bundle := filepath.Join(dir, "bundle")
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("busybox-static is needed")
	}
	os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bb, 0o755)
	for _, d := range []string{"proc", "sys", "dev", "tmp"} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	spec := specs.Spec{
		Version: specs.Version, Root: &specs.Root{Path: rootfs},
		Process: &specs.Process{Args: []string{"/bin/busybox", "sleep", "300"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{CgroupsPath: "/berth-test/ctr1", Namespaces: []specs.LinuxNamespace{
			{Type: specs.MountNamespace},
			{Type: specs.NetworkNamespace, Path: sb.NamespacePaths["net"]},
			{Type: specs.IPCNamespace, Path: sb.NamespacePaths["ipc"]},
			{Type: specs.UTSNamespace, Path: sb.NamespacePaths["uts"]},
			{Type: specs.PIDNamespace, Path: sb.NamespacePaths["pid"]},
		}},
	}
	b, _ := json.Marshal(spec)
	os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644)
	opts := &runtimev1.RuntimeOptions{Handler: "runc"}
	cc, err := p.CreateCommand(ctx, &runtimev1.CreateCommandRequest{ContainerId: "ctr1", Options: opts, Bundle: bundle, PidFile: filepath.Join(dir, "pid")})
	if err != nil {
		t.Fatal(err)
	}
	// The container inherits the create command's stdio: a file, not a
	// pipe the test would wait on (the monitor owns real pipes).
	logf, err := os.Create(filepath.Join(dir, "create.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	t.Cleanup(func() {
		p.Delete(ctx, &runtimev1.DeleteRequest{ContainerId: "ctr1", Options: opts}) //nolint:errcheck
		for _, c := range []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd", "unified"} {
			os.Remove(filepath.Join("/sys/fs/cgroup", c, "berth-test", "ctr1"))
			os.Remove(filepath.Join("/sys/fs/cgroup", c, "berth-test"))
		}
	})
	create := exec.Command(cc.Argv[0], cc.Argv[1:]...)
	create.Stdout, create.Stderr = logf, logf
	if err := create.Run(); err != nil {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("create: %v\n%s", err, b)
	}
	if _, err := p.Start(ctx, &runtimev1.StartRequest{ContainerId: "ctr1", Options: opts}); err != nil {
		t.Fatal(err)
	}
	st, err := p.State(ctx, &runtimev1.StateRequest{ContainerId: "ctr1", Options: opts})
	if err != nil || st.Status != "running" {
		t.Fatalf("state %v %v", st, err)
	}
	// The pod's PID namespace: the container's init is not PID 1 there.
	nspid, _ := os.ReadFile(filepath.Join("/proc", itoa(int(st.Pid)), "status"))
	if !strings.Contains(string(nspid), "NSpid:") || strings.Contains(string(nspid), "NSpid:\t"+itoa(int(st.Pid))+"\t1\n") {
		t.Errorf("container init is PID 1 of its namespace: %s", grepLine(string(nspid), "NSpid"))
	}
	if _, err := p.Kill(ctx, &runtimev1.KillRequest{ContainerId: "ctr1", Options: opts, Signal: int32(syscall.SIGKILL)}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		st, err = p.State(ctx, &runtimev1.StateRequest{ContainerId: "ctr1", Options: opts})
		if err == nil && st.Status == "stopped" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.GetStatus() != "stopped" {
		t.Fatalf("after SIGKILL: %v %v", st, err)
	}
	if _, err := p.Delete(ctx, &runtimev1.DeleteRequest{ContainerId: "ctr1", Options: opts}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Delete(ctx, &runtimev1.DeleteRequest{ContainerId: "ctr1", Options: opts}); err != nil {
		t.Fatalf("second delete: %v", err)
	}

	// Stop ends the pod init; remove unpins everything.
	if _, err := p.StopSandbox(ctx, &runtimev1.StopSandboxRequest{SandboxId: "pod1", Handle: sb.Handle}); err != nil {
		t.Fatal(err)
	}
	if sandbox.InitAlive(int(sb.InitPid)) {
		t.Error("pod init alive after StopSandbox")
	}
	if _, err := p.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{SandboxId: "pod1", Handle: sb.Handle}); err != nil {
		t.Fatal(err)
	}
	for _, path := range sb.NamespacePaths {
		if mounted(path) {
			t.Errorf("%s still mounted", path)
		}
	}
	if _, err := p.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{SandboxId: "pod1", Handle: sb.Handle}); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func grepLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
