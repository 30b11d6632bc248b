package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testimages"
)

// podClients starts a daemon with a registry holding busybox and returns
// CRI clients and the image reference.
func podClients(t *testing.T) (*daemon, runtimeapi.RuntimeServiceClient, string) {
	t.Helper()
	needRoot(t)
	reg := testimages.StartRegistry(t)
	reg.Push(t, "busybox", testimages.Busybox(t), "latest")
	d := startDaemon(t)
	t.Cleanup(func() { d.stop(); assertNoMounts(t, d.dir) })
	conn, err := grpcConn(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ic := runtimeapi.NewImageServiceClient(conn)
	ref := reg.Ref("busybox:latest")
	if _, err := ic.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatal(err)
	}
	return d, runtimeapi.NewRuntimeServiceClient(conn), ref
}

func podConfig(d *daemon, name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: name + "-uid"},
		Hostname:     name,
		LogDirectory: filepath.Join(d.dir, "logs", name),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
}

func ctrConfig(name, image, script string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  []string{"/bin/sh", "-c", script},
		LogPath:  name + ".log",
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

func waitState(t *testing.T, rc runtimeapi.RuntimeServiceClient, id string, want runtimeapi.ContainerState) *runtimeapi.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := rc.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if st.Status.State == want {
			return st.Status
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s is %v, want %v", id, st.Status.State, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIntegrationPodLifecycle(t *testing.T) {
	d, rc, image := podClients(t)
	ctx := context.Background()
	pcfg := podConfig(d, "web")
	pod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatal(err)
	}
	// The same pod name again is refused, naming the holder.
	if _, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg}); status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), pod.PodSandboxId) {
		t.Errorf("duplicate pod: %v", err)
	}
	ps, err := rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod.PodSandboxId})
	if err != nil || ps.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || ps.Status.Metadata.Name != "web" {
		t.Fatalf("pod status %v %v", ps, err)
	}

	evctx, stopEvents := context.WithCancel(ctx)
	defer stopEvents()
	events, err := rc.GetContainerEvents(evctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// A container that writes to both streams and exits 3.
	c1, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: ctrConfig("hello", image, "echo out; echo err >&2; hostname; exit 3")})
	if err != nil {
		t.Fatal(err)
	}
	if st := waitState(t, rc, c1.ContainerId, runtimeapi.ContainerState_CONTAINER_CREATED); st.LogPath == "" {
		t.Errorf("no log path: %+v", st)
	}
	if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c1.ContainerId}); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, rc, c1.ContainerId, runtimeapi.ContainerState_CONTAINER_EXITED)
	if st.ExitCode != 3 || st.Reason != "Error" || st.FinishedAt <= st.StartedAt || st.StartedAt <= st.CreatedAt {
		t.Errorf("exited container: %+v", st)
	}
	log, err := os.ReadFile(st.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\S+Z (stdout|stderr) F (.*)$`)
	var lines []string
	for _, m := range re.FindAllStringSubmatch(string(log), -1) {
		lines = append(lines, m[1]+":"+m[2])
	}
	joined := strings.Join(lines, ",")
	for _, want := range []string{"stdout:out", "stderr:err", "stdout:web"} {
		if !strings.Contains(joined, want) {
			t.Errorf("log %q lacks %q", log, want)
		}
	}

	// A container that ignores SIGTERM is killed after the stop timeout,
	// and StopContainer returns within the timeout plus a short grace.
	c2, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: ctrConfig("stubborn", image, "trap '' TERM; while true; do sleep 0.1; done")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c2.ContainerId}); err != nil {
		t.Fatal(err)
	}
	waitState(t, rc, c2.ContainerId, runtimeapi.ContainerState_CONTAINER_RUNNING)
	start := time.Now()
	if _, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c2.ContainerId, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("StopContainer with a 1s timeout took %v", took)
	}
	if st := waitState(t, rc, c2.ContainerId, runtimeapi.ContainerState_CONTAINER_EXITED); st.ExitCode != 137 {
		t.Errorf("killed container exit code %d, want 137", st.ExitCode)
	}
	// Stopping again, and stopping or removing what is gone, succeed.
	for _, err := range []error{
		func() error {
			_, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c2.ContainerId})
			return err
		}(),
		func() error {
			_, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: "nope"})
			return err
		}(),
		func() error {
			_, err := rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: "nope"})
			return err
		}(),
	} {
		if err != nil {
			t.Errorf("idempotent call: %v", err)
		}
	}
	list, err := rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod.PodSandboxId}})
	if err != nil || len(list.Containers) != 2 {
		t.Fatalf("ListContainers %v %v", list, err)
	}
	if _, err := rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c1.ContainerId}); err != nil {
		t.Fatal(err)
	}
	// c1's whole life, in order, on the event stream.
	var seen []runtimeapi.ContainerEventType
	for len(seen) < 4 {
		ev, err := events.Recv()
		if err != nil {
			t.Fatalf("events: %v (seen %v)", err, seen)
		}
		if ev.ContainerId == c1.ContainerId {
			seen = append(seen, ev.ContainerEventType)
			if ev.PodSandboxStatus.GetId() != pod.PodSandboxId {
				t.Errorf("event without its pod's status: %v", ev)
			}
		}
	}
	want := []runtimeapi.ContainerEventType{runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT}
	for i := range want {
		if seen[i] != want[i] {
			t.Errorf("events %v, want %v", seen, want)
			break
		}
	}
	// The name is free again once removed.
	if _, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: ctrConfig("hello", image, "sleep 60")}); err != nil {
		t.Fatalf("reuse of a removed container's name: %v", err)
	}
	// Bad input: InvalidArgument naming the field, and nothing left behind.
	bad := ctrConfig("bad", image, "true")
	bad.Mounts = []*runtimeapi.Mount{{ContainerPath: "relative", HostPath: "/tmp"}}
	if _, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg, Config: bad}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "config.mounts[0].container_path") {
		t.Errorf("relative mount: %v", err)
	}
	if _, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg, Config: bad}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("the same bad request again (nothing reserved by the first): %v", err)
	}
	if _, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: image}}}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "config.metadata.name") {
		t.Errorf("missing metadata name: %v", err)
	}

	// ExecSync: output, exit code, and a timeout that leaves nothing behind.
	c3, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: ctrConfig("exec", image, "sleep 300")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c3.ContainerId}); err != nil {
		t.Fatal(err)
	}
	// Stats and resource updates.
	stats, err := rc.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: c3.ContainerId})
	if err != nil || stats.Stats.GetMemory().GetWorkingSetBytes().GetValue() == 0 || stats.Stats.GetCpu().GetTimestamp() == 0 ||
		stats.Stats.GetWritableLayer().GetInodesUsed() == nil {
		t.Errorf("ContainerStats = %v, %v", stats, err)
	}
	if list, err := rc.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{Id: c3.ContainerId}}); err != nil || len(list.Stats) != 1 {
		t.Errorf("ListContainerStats = %v, %v", list, err)
	}
	if _, err := rc.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: c3.ContainerId,
		Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 256}}); err != nil {
		t.Errorf("UpdateContainerResources: %v", err)
	}
	if st, _ := rc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c3.ContainerId}); st.GetStatus().GetResources().GetLinux().GetMemoryLimitInBytes() != 64<<20 {
		t.Errorf("resources after update: %v", st.GetStatus().GetResources())
	}
	if _, err := rc.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: c3.ContainerId,
		Linux: &runtimeapi.LinuxContainerResources{CpuShares: -2}}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "linux.cpu_shares") {
		t.Errorf("negative CPU shares: %v", err)
	}
	res, err := rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: c3.ContainerId, Cmd: []string{"sh", "-c", "echo hi; echo there >&2; exit 7"}, Timeout: 10})
	if err != nil || string(res.Stdout) != "hi\n" || string(res.Stderr) != "there\n" || res.ExitCode != 7 {
		t.Errorf("ExecSync = %+v, %v", res, err)
	}
	start = time.Now()
	_, err = rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: c3.ContainerId, Cmd: []string{"sh", "-c", "sleep 100; true"}, Timeout: 1})
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > 5*time.Second {
		t.Errorf("ExecSync past its timeout: %v after %v", err, time.Since(start))
	}
	res, err = rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: c3.ContainerId, Cmd: []string{"ps", "-o", "pid,stat,comm"}, Timeout: 10})
	if err != nil || strings.Count(string(res.Stdout), "sleep") != 1 { // the container's own sleep 300
		t.Errorf("the timed-out command left processes:\n%s %v", res.GetStdout(), err)
	}

	// Stop and remove the pod with its containers; again is fine.
	for i := 0; i < 2; i++ {
		if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
			t.Fatal(err)
		}
	}
	if pods, _ := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); len(pods.GetItems()) != 0 {
		t.Errorf("pods left: %v", pods.Items)
	}
	if cs, _ := rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); len(cs.GetContainers()) != 0 {
		t.Errorf("containers left: %v", cs.Containers)
	}
	for _, sub := range []string{"run/sandboxes", "run/containers"} {
		if entries, _ := os.ReadDir(filepath.Join(d.dir, sub)); len(entries) != 0 {
			t.Errorf("%s not empty: %v", sub, entries)
		}
	}
}
