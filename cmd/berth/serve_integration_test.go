package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/host/plugins"
)

// buildTags are the Makefile's TAGS: containers/image and containers/storage
// without the cgo-heavy parts.
const buildTags = "containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_zfs,containers_image_docker_daemon_stub"

// daemon is a `berth serve` started by a test from freshly built binaries.
type daemon struct {
	t                               *testing.T
	dir, bin, socket, root, runroot string
	config                          string // plugins.toml used
	cmd                             *exec.Cmd
	log                             *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for the daemon's output copier and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// buildBerth builds the host, the multi-call plugin binary (hard-linked
// under each plugin's name) and the plugins' helper programs into dir, as
// `make build` does.
func buildBerth(t *testing.T, dir string) string {
	t.Helper()
	for _, b := range []struct{ out, pkg string }{{"berth", "."}, {"berth-plugins", "../berth-plugins"},
		{"berth-conmon", "../../plugins/monitor/cmd/berth-conmon"}, {"berth-pod-init", "../../plugins/runc/cmd/berth-pod-init"},
		{"berth-gvisor-keeper", "../../plugins/runc/cmd/berth-gvisor-keeper"}} {
		cmd := exec.Command("go", "build", "-tags", buildTags, "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	for _, p := range []string{"runc", "kata", "overlay", "cni", "monitor"} {
		if err := os.Link(filepath.Join(dir, "berth-plugins"), filepath.Join(dir, "berth-"+p)); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "berth")
}

func startDaemon(t *testing.T) *daemon {
	return startDaemonWith(t, "../../plugins.toml")
}

// startDaemonWith starts berth serve with a given plugins.toml.
func startDaemonWith(t *testing.T, config string) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{t: t, dir: dir, bin: buildBerth(t, dir), socket: filepath.Join(dir, "berth.sock"),
		root: filepath.Join(dir, "root"), runroot: filepath.Join(dir, "run"), log: &syncBuffer{}, config: config}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("berth serve log:\n%s", d.log)
		}
	})
	d.start()
	return d
}

// start runs `berth serve` and waits until it answers on its socket.
func (d *daemon) start() {
	d.t.Helper()
	d.cmd = exec.Command(d.bin, d.flags("serve")...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := daemonStatus(d.socket, false); err == nil {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("berth serve did not answer within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops the daemon with SIGTERM if it still runs.
func (d *daemon) stop() {
	if d.cmd != nil && d.cmd.ProcessState == nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		_ = d.cmd.Wait()
	}
}

func (d *daemon) flags(cmd string, extra ...string) []string {
	return append([]string{cmd, "--config", d.config, "--listen", d.socket, "--root", d.root, "--runroot", d.runroot}, extra...)
}

func (d *daemon) run(args ...string) (string, error) {
	out, err := exec.Command(d.bin, args...).CombinedOutput()
	return string(out), err
}

func (d *daemon) plugins() []plugins.Snapshot {
	d.t.Helper()
	out, err := exec.Command(d.bin, d.flags("plugins", "--json")...).Output()
	if err != nil {
		d.t.Fatalf("berth plugins: %v", err)
	}
	var snaps []plugins.Snapshot
	if err := json.Unmarshal(out, &snaps); err != nil {
		d.t.Fatalf("decode berth plugins --json: %v\n%s", err, out)
	}
	return snaps
}

func TestIntegrationServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs berth serve")
	}
	d := startDaemon(t)
	client, done, err := dialCRI(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	ctx := context.Background()

	v, err := client.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil || v.RuntimeName != "berth" || v.RuntimeApiVersion != "v1" {
		t.Fatalf("Version = %v, %v", v, err)
	}
	rc, err := client.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil || rc.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_CGROUPFS {
		t.Fatalf("RuntimeConfig = %v, %v", rc, err)
	}
	st, err := client.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]*runtimeapi.RuntimeCondition{}
	for _, c := range st.GetStatus().GetConditions() {
		conds[c.Type] = c
	}
	if c := conds[runtimeapi.RuntimeReady]; c == nil || !c.Status {
		t.Errorf("RuntimeReady = %+v, want true", c)
	}
	// Until the network plugin implements pod networking it may not claim
	// readiness, and it must say why.
	if c := conds[runtimeapi.NetworkReady]; c == nil || c.Status || c.Reason == "" || c.Message == "" {
		t.Errorf("NetworkReady = %+v: want false with a reason and message", c)
	}
	handlers := map[string]bool{}
	for _, h := range st.GetRuntimeHandlers() {
		handlers[h.Name] = true
	}
	for _, h := range []string{"", "runc", "runsc", "kata"} {
		if !handlers[h] {
			t.Errorf("runtime handler %q missing from %v", h, st.GetRuntimeHandlers())
		}
	}
	if _, err := client.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: "x"}); status.Code(err) != codes.Unimplemented {
		t.Errorf("Attach: %v, want Unimplemented", err)
	}

	snaps := d.plugins()
	if len(snaps) != 5 {
		t.Fatalf("berth plugins lists %d plugins: %+v", len(snaps), snaps)
	}
	var runc plugins.Snapshot
	for _, s := range snaps {
		if s.State != plugins.StateRunning || s.Protocol != 1 || s.PID == 0 {
			t.Errorf("plugin %s: %+v", s.Name, s)
		}
		if s.Name == "runc" {
			runc = s
		}
	}
	if !runc.Healthy || !strings.Contains(runc.Attributes["binary_version"], "runc version") {
		t.Errorf("runc plugin should be healthy and know the runc version: %+v", runc)
	}
	table, err := d.run(d.flags("plugins")...)
	if err != nil || !strings.Contains(table, "PROTOCOL") || !strings.Contains(table, "berth-monitor") {
		t.Errorf("berth plugins table: %v\n%s", err, table)
	}

	// kill -9 of a plugin: noticed, restarted, serving within 2s.
	if err := syscall.Kill(runc.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		var s plugins.Snapshot
		for _, x := range d.plugins() {
			if x.Name == "runc" {
				s = x
			}
		}
		if s.State == plugins.StateRunning && s.PID != runc.PID && s.Restarts == 1 {
			t.Logf("runc plugin serving again after %v (pid %d -> %d)", time.Since(start), runc.PID, s.PID)
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("runc plugin not serving 2s after kill -9: %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// SIGTERM: clean stop, plugins gone, socket removed.
	pids := []int{}
	for _, s := range d.plugins() {
		pids = append(pids, s.PID)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- d.cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("berth serve exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("berth serve did not stop within 15s of SIGTERM")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("plugin pid %d still alive after berth stopped", pid)
		}
	}
	if _, err := os.Stat(d.socket); !os.IsNotExist(err) {
		t.Errorf("socket left after stop: %v", err)
	}
}

// TestIntegrationCrictl drives the daemon with crictl, unmodified, when the
// build provides it (make test installs crictl v1.37.0 and sets CRICTL).
func TestIntegrationCrictl(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs berth serve")
	}
	crictl := os.Getenv("CRICTL")
	if crictl == "" {
		t.Skip("CRICTL not set (make test sets it)")
	}
	d := startDaemon(t)
	ep := "unix://" + d.socket
	out, err := exec.Command(crictl, "--runtime-endpoint", ep, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "RuntimeName:  berth") {
		t.Fatalf("crictl version: %v\n%s", err, out)
	}
	out, err = exec.Command(crictl, "--runtime-endpoint", ep, "info").Output()
	if err != nil {
		t.Fatalf("crictl info: %v\n%s", err, out)
	}
	var info struct {
		Status struct {
			Conditions []struct {
				Type    string `json:"type"`
				Status  bool   `json:"status"`
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"conditions"`
		} `json:"status"`
		Plugins map[string]plugins.Snapshot `json:"plugins"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("decode crictl info: %v\n%s", err, out)
	}
	if len(info.Status.Conditions) != 2 || info.Status.Conditions[0].Type != "RuntimeReady" || info.Status.Conditions[1].Type != "NetworkReady" {
		t.Fatalf("crictl info conditions: %+v", info.Status.Conditions)
	}
	if len(info.Plugins) != 5 {
		t.Errorf("crictl info does not show the plugin table: %+v", info.Plugins)
	}
}

// TestIntegrationHostCrashReattach: kill -9 of the host leaves the plugins
// running; the next host adopts the same processes, and stopping it stops them.
func TestIntegrationHostCrashReattach(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs berth serve")
	}
	d := startDaemon(t)
	before := map[string]int{}
	for _, s := range d.plugins() {
		before[s.Name] = s.PID
	}
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
	for name, pid := range before {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("plugin %s (pid %d) died with the host: %v", name, pid, err)
		}
	}
	d.start()
	for _, s := range d.plugins() {
		if s.PID != before[s.Name] || s.State != plugins.StateRunning {
			t.Errorf("plugin %s: pid %d state %s after restart, want the reattached pid %d", s.Name, s.PID, s.State, before[s.Name])
		}
	}
	if !strings.Contains(d.log.String(), "reattached to plugin") {
		t.Errorf("log does not mention reattaching")
	}
	d.stop()
	time.Sleep(100 * time.Millisecond)
	for name, pid := range before {
		// The reattached plugins are not our children: check for exit, or a
		// zombie awaiting init's reaping.
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && !strings.Contains(string(b), ") Z") {
			t.Errorf("plugin %s (pid %d) still running after the host stopped", name, pid)
		}
	}
}
