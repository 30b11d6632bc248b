package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/host/state"
)

// TestIntegrationHostCrash: kill -9 of berth with a running container and a
// pod caught half-way through creation; after a restart the container still
// runs and its later exit is recorded, and the half-created pod is undone
// with nothing left behind.
func TestIntegrationHostCrash(t *testing.T) {
	d, rc, image := podClients(t)
	ctx := context.Background()
	pcfg := podConfig(d, "survivor")
	pod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatal(err)
	}
	c, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: ctrConfig("worker", image, "while [ ! -e /tmp/stop ]; do sleep 0.1; done; echo bye; exit 42")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	// A second pod, whose record we rewind to "creating" while berth is
	// down: what a crash between the runtime's CreateSandbox and the
	// record's update leaves.
	half, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig(d, "half")})
	if err != nil {
		t.Fatal(err)
	}

	halfDir := killAndRewindPod(t, d, half.PodSandboxId).Dir

	d.start()
	st := waitState(t, rc, c.ContainerId, runtimeapi.ContainerState_CONTAINER_RUNNING)
	if st.ExitCode != 0 {
		t.Errorf("container after restart: %+v", st)
	}
	if _, err := rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: half.PodSandboxId}); err == nil {
		t.Errorf("half-created pod still known after recovery")
	}
	if _, err := os.Stat(halfDir); !os.IsNotExist(err) {
		t.Errorf("half-created pod's directory left: %v", err)
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(b), half.PodSandboxId) {
		t.Errorf("half-created pod's mounts left")
	}
	// Its name is free again.
	if _, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig(d, "half")}); err != nil {
		t.Errorf("name of the undone pod: %v", err)
	}
	// The surviving container's exit, after the restart, is recorded.
	if _, err := rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: c.ContainerId, Cmd: []string{"touch", "/tmp/stop"}, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	st = waitState(t, rc, c.ContainerId, runtimeapi.ContainerState_CONTAINER_EXITED)
	if st.ExitCode != 42 {
		t.Errorf("exit code after restart %d, want 42", st.ExitCode)
	}
	pods, _ := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	for _, p := range pods.GetItems() {
		if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Error(err)
		}
	}
}

// TestIntegrationMonitorPluginKilled: kill -9 of the monitor plugin's
// process while a container runs: the container keeps running (its
// supervisor is a separate process), the plugin comes back, and the
// container's later exit is recorded.
func TestIntegrationMonitorPluginKilled(t *testing.T) {
	d, rc, image := podClients(t)
	ctx := context.Background()
	pcfg := podConfig(d, "watched")
	pod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatal(err)
	}
	c, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: ctrConfig("worker", image, "while [ ! -e /tmp/stop ]; do sleep 0.1; done; echo bye; exit 7")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	var monitorPID int
	for _, s := range d.plugins() {
		if s.Name == "monitor" {
			monitorPID = s.PID
		}
	}
	if err := syscall.Kill(monitorPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		back := false
		for _, s := range d.plugins() {
			back = back || (s.Name == "monitor" && s.PID != monitorPID && s.State == "running")
		}
		if back {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("monitor plugin not back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitState(t, rc, c.ContainerId, runtimeapi.ContainerState_CONTAINER_RUNNING)
	if _, err := rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: c.ContainerId, Cmd: []string{"touch", "/tmp/stop"}, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, rc, c.ContainerId, runtimeapi.ContainerState_CONTAINER_EXITED)
	if st.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", st.ExitCode)
	}
	log, _ := os.ReadFile(st.LogPath)
	if !strings.Contains(string(log), "stdout F bye") {
		t.Errorf("log written after the plugin's death lacks the last line: %q", log)
	}
	if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Error(err)
	}
}

// killAndRewindPod kills berth serve (SIGKILL) and rewinds pod id's record to
// what a crash between the runtime's CreateSandbox and the record's update
// leaves: phase creating, no handle, no namespaces. It returns the record.
func killAndRewindPod(t *testing.T, d *daemon, id string) *state.Sandbox {
	t.Helper()
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
	store, err := state.Open(filepath.Join(d.root, "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sb, err := store.Sandbox(id)
	if err != nil {
		t.Fatal(err)
	}
	sb.Phase, sb.Handle, sb.Namespaces = state.PhaseCreating, nil, nil
	if err := store.UpdateSandbox(sb); err != nil {
		t.Fatal(err)
	}
	return sb
}
