package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testimages"
)

// TestIntegrationStopWithHungRuntime runs a pod on a runtime class whose
// OCI runtime hangs on every `kill` (a wrapper around the real runc), with
// containers that ignore SIGTERM. StopContainer and StopPodSandbox must
// still return within the timeout plus a short grace, with the containers
// dead and their exits recorded.
func TestIntegrationStopWithHungRuntime(t *testing.T) {
	needRoot(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed")
	}
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "runc-hangs-on-kill")
	script := "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = kill ] && exec sleep 3599; done\nexec " + runc + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../plugins.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "plugins.toml")
	cfg := string(b) + "\n[runtime_classes.hang]\nplugin = \"runc\"\n[runtime_classes.hang.config]\nbinary = \"" + wrapper + "\"\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := testimages.StartRegistry(t)
	reg.Push(t, "busybox", testimages.Busybox(t), "latest")
	d := startDaemonWith(t, cfgPath)
	t.Cleanup(func() { d.stop(); assertNoMounts(t, d.dir) })
	conn, err := grpcConn(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := context.Background()
	image := reg.Ref("busybox:latest")
	if _, err := runtimeapi.NewImageServiceClient(conn).PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); err != nil {
		t.Fatal(err)
	}
	rc := runtimeapi.NewRuntimeServiceClient(conn)
	pcfg := podConfig(d, "hung")
	pod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg, RuntimeHandler: "hang"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		_, _ = rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	})
	start := func(name string) string {
		c, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
			Config: ctrConfig(name, image, "trap '' TERM; echo up; while true; do sleep 0.1; done")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatal(err)
		}
		waitState(t, rc, c.ContainerId, runtimeapi.ContainerState_CONTAINER_RUNNING)
		return c.ContainerId
	}
	a, b1, b2 := start("a"), start("b1"), start("b2")

	// Budget: the timeout, one hung kill call (2 s), the SIGKILL grace
	// (5 s), plus slack for a loaded CI machine.
	t0 := time.Now()
	if _, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: a, Timeout: 1}); err != nil {
		t.Fatalf("StopContainer with a hung runtime: %v", err)
	}
	if took := time.Since(t0); took > 1*time.Second+2*time.Second+5*time.Second+2*time.Second {
		t.Errorf("StopContainer took %v", took)
	}
	if st := waitState(t, rc, a, runtimeapi.ContainerState_CONTAINER_EXITED); st.ExitCode != 137 {
		t.Errorf("container a: exit code %d, want 137 (SIGKILL)", st.ExitCode)
	}
	t.Logf("StopContainer(timeout 1s) with a runtime hanging on kill: %v", time.Since(t0).Round(time.Millisecond))

	// Two containers at once: StopPodSandbox takes one budget, not two.
	t0 = time.Now()
	if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatalf("StopPodSandbox with a hung runtime: %v", err)
	}
	if took := time.Since(t0); took > 2*time.Second+5*time.Second+2*time.Second {
		t.Errorf("StopPodSandbox took %v", took)
	}
	t.Logf("StopPodSandbox (2 running containers) with a runtime hanging on kill: %v", time.Since(t0).Round(time.Millisecond))
	for _, id := range []string{b1, b2} {
		if st := waitState(t, rc, id, runtimeapi.ContainerState_CONTAINER_EXITED); st.ExitCode != 137 {
			t.Errorf("container %s: exit code %d, want 137", id, st.ExitCode)
		}
	}
	ps, err := rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod.PodSandboxId})
	if err != nil || ps.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod after stop: %v %v", ps, err)
	}
	if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	// No hung `kill` wrapper is left behind (a cancelled runtime call
	// kills its process group); 3599 marks this test's wrappers.
	time.Sleep(200 * time.Millisecond)
	if out, _ := exec.Command("pgrep", "-f", "^sleep 3599$").Output(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("hung runtime calls left running: %s", out)
	}
}

// TestIntegrationPodInitKilled kills a pod's init (what the OOM killer or
// an operator may do): the pod's PID namespace and its containers die with
// it, and the pod must turn NotReady so that kubelet replaces it.
func TestIntegrationPodInitKilled(t *testing.T) {
	d, rc, image := podClients(t)
	ctx := context.Background()
	pcfg := podConfig(d, "orphan")
	pod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		_, _ = rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	})
	c, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: ctrConfig("app", image, "sleep 3600")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	st, err := rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod.PodSandboxId, Verbose: true})
	if err != nil || st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod before: %v %v", st, err)
	}
	var info struct {
		InitPID int `json:"init_pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.InitPID <= 0 {
		t.Fatalf("no init pid in %v: %v", st.Info, err)
	}
	if err := syscall.Kill(info.InitPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if cs := waitState(t, rc, c.ContainerId, runtimeapi.ContainerState_CONTAINER_EXITED); cs.ExitCode != 137 {
		t.Errorf("container after its pod init died: %+v", cs)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err = rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod.PodSandboxId})
		if err != nil {
			t.Fatal(err)
		}
		if st.Status.State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod still %v after its init died", st.Status.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	list, err := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: pod.PodSandboxId}})
	if err != nil || len(list.Items) != 1 || list.Items[0].State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("ListPodSandbox after the init died: %v %v", list, err)
	}
}
