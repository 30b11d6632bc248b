package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// memoryCgroup is the v1 memory (or v2 unified) directory of a cgroupfs path.
func memoryCgroup(path string) string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return filepath.Join("/sys/fs/cgroup", path)
	}
	return filepath.Join("/sys/fs/cgroup/memory", path)
}

// TestIntegrationPodStatsAndMetrics runs a pod whose container fills 4 MiB
// of the pod's /dev/shm (charged to its cgroup) and checks PodSandboxStats, ListPodSandboxStats, the metrics RPCs
// and UpdatePodSandboxResources against the pod's real cgroup parent.
func TestIntegrationPodStatsAndMetrics(t *testing.T) {
	d, rc, image := podClients(t)
	ctx := context.Background()
	pcfg := podConfig(d, "stats")
	pcfg.Labels = map[string]string{"app": "stats"}
	pcfg.Annotations = map[string]string{"io.berth.shm-size": "8Mi"}
	// Pod-level limits on the cgroup parent Berth makes for the pod.
	pcfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 256, MemoryLimitInBytes: 96 << 20}
	pcfg.Linux.Overhead = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20}
	pod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		_, _ = rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	})
	parent := "/berth/pod-" + pod.PodSandboxId[:12]
	limit := func() int64 {
		file := "memory.limit_in_bytes"
		if strings.HasPrefix(memoryCgroup(parent), "/sys/fs/cgroup/berth") {
			file = "memory.max"
		}
		b, err := os.ReadFile(filepath.Join(memoryCgroup(parent), file))
		if err != nil {
			t.Fatal(err)
		}
		v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return v
	}
	if got := limit(); got != 128<<20 {
		t.Errorf("pod memory limit %d, want resources+overhead = %d", got, 128<<20)
	}
	// /dev/shm has the size the annotation asks for.
	mounts, _ := os.ReadFile("/proc/self/mounts")
	shmOK := false
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 3 && strings.Contains(f[1], pod.PodSandboxId) && strings.HasSuffix(f[1], "/shm") {
			shmOK = strings.Contains(f[3], "size=8192k")
		}
	}
	if !shmOK {
		t.Errorf("pod shm mount not sized 8Mi in %s", mounts)
	}
	// The pod init lives in the pod's cgroup.
	procs, _ := os.ReadFile(filepath.Join(memoryCgroup(parent), "cgroup.procs"))
	if len(strings.Fields(string(procs))) != 1 {
		t.Errorf("pod cgroup %s holds %q, want the pod init", parent, procs)
	}

	c, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: ctrConfig("hog", image, `dd if=/dev/zero of=/dev/shm/fill bs=1M count=4; sleep 3600`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	var ps *runtimeapi.PodSandboxStats
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := rc.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod.PodSandboxId})
		if err != nil {
			t.Fatal(err)
		}
		ps = resp.Stats
		if ps.GetLinux().GetMemory().GetWorkingSetBytes().GetValue() > 3<<20 && len(ps.GetLinux().GetContainers()) == 1 &&
			ps.Linux.Containers[0].GetMemory().GetRssBytes().GetValue() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod stats never showed the container's memory: %v", ps)
		}
		time.Sleep(100 * time.Millisecond)
	}
	l := ps.Linux
	if ps.Attributes.Id != pod.PodSandboxId || ps.Attributes.Metadata.Name != "stats" || l.Cpu.UsageCoreNanoSeconds.GetValue() == 0 ||
		l.Process.ProcessCount.GetValue() < 3 || l.Memory.AvailableBytes.GetValue() == 0 || l.Memory.AvailableBytes.GetValue() > 128<<20 {
		t.Errorf("pod stats: %v", ps)
	}
	if l.Memory.WorkingSetBytes.GetValue() < l.Containers[0].Memory.WorkingSetBytes.GetValue() {
		t.Errorf("pod working set %d < its container's %d", l.Memory.WorkingSetBytes.GetValue(), l.Containers[0].Memory.WorkingSetBytes.GetValue())
	}

	list, err := rc.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "stats"}}})
	if err != nil || len(list.Stats) != 1 || list.Stats[0].Attributes.Id != pod.PodSandboxId {
		t.Errorf("ListPodSandboxStats by label: %v %v", list, err)
	}
	if list, err := rc.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "other"}}}); err != nil || len(list.Stats) != 0 {
		t.Errorf("ListPodSandboxStats by other label: %v %v", list, err)
	}
	if _, err := rc.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("stats of a missing pod: %v", err)
	}

	descs, err := rc.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil || len(descs.Descriptors) < 20 {
		t.Fatalf("descriptors: %v %v", descs, err)
	}
	metrics, err := rc.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, pm := range metrics.PodMetrics {
		if pm.PodSandboxId != pod.PodSandboxId {
			continue
		}
		for _, cm := range pm.ContainerMetrics {
			for _, m := range cm.Metrics {
				if m.Name == "container_memory_working_set_bytes" && m.Value.GetValue() > 3<<20 && cm.ContainerId == c.ContainerId &&
					strings.Join(m.LabelValues, ",") == strings.Join([]string{c.ContainerId, image, "default", "stats", "hog"}, ",") {
					found = true
				}
			}
		}
	}
	if !found {
		t.Errorf("no working-set series for the container in %v", metrics)
	}

	// In-place resize of the pod: the new limit lands on the parent.
	if _, err := rc.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: pod.PodSandboxId,
		Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 192 << 20}}); err != nil {
		t.Fatal(err)
	}
	if got := limit(); got != 192<<20 {
		t.Errorf("pod memory limit after resize %d, want %d", got, 192<<20)
	}
	if _, err := rc.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: pod.PodSandboxId,
		Resources: &runtimeapi.LinuxContainerResources{CpuShares: -1}}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "resources.cpu_shares") {
		t.Errorf("negative shares: %v", err)
	}
	if _, err := rc.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("resize of a missing pod: %v", err)
	}
}

// defaultPodCgroups lists Berth's default pod cgroup parents in every hierarchy.
func defaultPodCgroups() map[string]bool {
	out := map[string]bool{}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/berth/pod-*")
	more, _ := filepath.Glob("/sys/fs/cgroup/berth/pod-*")
	for _, d := range append(dirs, more...) {
		out[d] = true
	}
	return out
}

// TestIntegrationRunPodSandboxUndo makes RunPodSandbox fail for real after
// the runtime made the pod (pod-level cpuset naming a CPU the node lacks:
// the kernel refuses it on the pod's cgroup parent) and checks that nothing
// of the pod is left: no record, no pinned namespace, no pod init, no cgroup.
func TestIntegrationRunPodSandboxUndo(t *testing.T) {
	d, rc, _ := podClients(t)
	ctx := context.Background()
	before := defaultPodCgroups()
	pcfg := podConfig(d, "undo")
	pcfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpusetCpus: "4095"}
	_, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err == nil {
		t.Fatal("RunPodSandbox with cpuset 4095 succeeded")
	}
	t.Logf("RunPodSandbox: %v", err)
	if pods, err := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil || len(pods.Items) != 0 {
		t.Errorf("pods after a failed RunPodSandbox: %v %v", pods, err)
	}
	for dir := range defaultPodCgroups() {
		if !before[dir] {
			t.Errorf("cgroup %s left by the failed RunPodSandbox", dir)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(d.runroot, "sandboxes")); len(entries) != 0 {
		t.Errorf("sandbox dirs left: %v", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.runroot, "plugins", "run", "runc", "sandboxes")); len(entries) != 0 {
		t.Errorf("runc plugin sandbox dirs left: %v", entries)
	}
	// The name is free again.
	pcfg.Linux.Resources = nil
	pod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("the same pod without the bad cpuset: %v", err)
	}
	_, _ = rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	_, _ = rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
}
