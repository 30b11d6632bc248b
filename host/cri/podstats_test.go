package cri

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/host/state"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
	storagev1 "github.com/berth-cri/berth/sdk/proto/storage/v1"
)

func TestPodResources(t *testing.T) {
	for name, tc := range map[string]struct {
		res, overhead, want *runtimeapi.LinuxContainerResources
	}{
		"sum": {
			res:      &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20},
			overhead: &runtimeapi.LinuxContainerResources{CpuShares: 10, CpuQuota: 1000, MemoryLimitInBytes: 1 << 20},
			want:     &runtimeapi.LinuxContainerResources{CpuShares: 522, CpuQuota: 51000, CpuPeriod: 100000, MemoryLimitInBytes: 65 << 20},
		},
		"unlimited stays unlimited": {
			res:      &runtimeapi.LinuxContainerResources{CpuShares: 2},
			overhead: &runtimeapi.LinuxContainerResources{CpuQuota: 1000, MemoryLimitInBytes: 1 << 20},
			want:     &runtimeapi.LinuxContainerResources{CpuShares: 2},
		},
		"no overhead": {
			res:  &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 8 << 20, CpusetCpus: "0"},
			want: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 8 << 20, CpusetCpus: "0"},
		},
	} {
		got := podResources(tc.res, tc.overhead)
		if got.String() != tc.want.String() {
			t.Errorf("%s: got %v, want %v", name, got, tc.want)
		}
	}
}

// TestMetricsMatchDescriptors checks that every series ListPodSandboxMetrics
// builds has a descriptor with as many label keys as it has values (kubelet
// drops series that do not).
func TestMetricsMatchDescriptors(t *testing.T) {
	descs := map[string]*runtimeapi.MetricDescriptor{}
	for _, d := range metricDescriptors() {
		if descs[d.Name] != nil {
			t.Errorf("descriptor %s listed twice", d.Name)
		}
		descs[d.Name] = d
	}
	raw := &runtimev1.StatsResponse{CpuUsageNanoCoresTotal: 3e9, CpuUserNanos: 2e9, MemoryUsageBytes: 100, MemoryWorkingSetBytes: 80, PidsCurrent: 2,
		Threads: 5, FileDescriptors: 9, Blkio: []*runtimev1.BlkioDevice{{Major: 254, Minor: 0, Name: "vda", ReadBytes: 512, Reads: 1}}}
	u := &podUsage{
		sb:  &state.Sandbox{ID: "pod1"},
		cfg: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "ns"}},
		pod: &runtimev1.SandboxStatsResponse{Usage: raw, Interfaces: []*runtimev1.InterfaceStats{{Name: "eth0", RxBytes: 7}}},
		containers: []containerUsage{
			{cfg: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}},
				stats: &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{Id: "c1"},
					WritableLayer: &runtimeapi.FilesystemUsage{UsedBytes: &runtimeapi.UInt64Value{Value: 4096}, InodesUsed: &runtimeapi.UInt64Value{Value: 3}}},
				fs:  &storagev1.FilesystemUsage{UsedBytes: 4096, InodesUsed: 3, CapacityBytes: 1 << 30, InodesTotal: 1000, InodesFree: 900},
				raw: raw, startedAt: 4e9},
			{cfg: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "exited"}},
				stats: &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{Id: "c2"}}},
		},
	}
	m := u.metrics(5e9)
	if m.PodSandboxId != "pod1" || len(m.ContainerMetrics) != 1 || m.ContainerMetrics[0].ContainerId != "c1" {
		t.Fatalf("pod metrics: %v", m)
	}
	seen := map[string]uint64{}
	check := func(ms []*runtimeapi.Metric) {
		for _, x := range ms {
			d := descs[x.Name]
			if d == nil {
				t.Errorf("series %s has no descriptor", x.Name)
				continue
			}
			if len(d.LabelKeys) != len(x.LabelValues) {
				t.Errorf("series %s: %d label values for keys %v", x.Name, len(x.LabelValues), d.LabelKeys)
			}
			seen[x.Name] = x.Value.GetValue()
		}
	}
	check(m.Metrics)
	check(m.ContainerMetrics[0].Metrics)
	for name, want := range map[string]uint64{"container_cpu_usage_seconds_total": 3, "container_cpu_user_seconds_total": 2,
		"container_memory_working_set_bytes": 80, "container_processes": 2, "container_fs_usage_bytes": 4096,
		"container_network_receive_bytes_total": 7, "container_last_seen": 5, "container_threads": 5, "container_file_descriptors": 9,
		"container_fs_limit_bytes": 1 << 30, "container_fs_inodes_free": 900, "container_start_time_seconds": 4,
		"container_fs_reads_bytes_total": 512, "container_blkio_device_usage_total": 0} {
		if seen[name] != want {
			t.Errorf("%s = %d, want %d", name, seen[name], want)
		}
	}
	st := u.criStats()
	if st.Linux.Network.DefaultInterface.GetName() != "eth0" || st.Linux.Process.ProcessCount.GetValue() != 2 || len(st.Linux.Containers) != 2 {
		t.Errorf("pod stats: %v", st)
	}
}

// critestMetrics are the metric names critest v1.37 requires of
// ListMetricDescriptors and ListPodSandboxMetrics (pkg/validate/pod.go:
// expectedMetricDescriptorNames minus its unimplementedMetricDescriptors).
var critestMetrics = []string{
	"container_blkio_device_usage_total", "container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total",
	"container_cpu_cfs_throttled_seconds_total", "container_cpu_system_seconds_total", "container_cpu_usage_seconds_total",
	"container_cpu_user_seconds_total", "container_file_descriptors", "container_fs_inodes_free", "container_fs_inodes_total",
	"container_fs_limit_bytes", "container_fs_reads_bytes_total", "container_fs_reads_total", "container_fs_usage_bytes",
	"container_fs_writes_bytes_total", "container_fs_writes_total", "container_last_seen", "container_memory_cache",
	"container_memory_failcnt", "container_memory_failures_total", "container_memory_kernel_usage", "container_memory_mapped_file",
	"container_memory_max_usage_bytes", "container_memory_rss", "container_memory_swap", "container_memory_usage_bytes",
	"container_memory_working_set_bytes", "container_network_receive_bytes_total", "container_network_receive_errors_total",
	"container_network_receive_packets_dropped_total", "container_network_receive_packets_total", "container_network_transmit_bytes_total",
	"container_network_transmit_errors_total", "container_network_transmit_packets_dropped_total", "container_network_transmit_packets_total",
	"container_oom_events_total", "container_processes", "container_sockets", "container_spec_cpu_period", "container_spec_cpu_shares",
	"container_spec_memory_limit_bytes", "container_spec_memory_swap_limit_bytes", "container_start_time_seconds", "container_threads",
	"container_threads_max",
}

func TestMetricDescriptorsCoverCritest(t *testing.T) {
	have := map[string]bool{}
	for _, d := range metricDescriptors() {
		if d.Help == "" || len(d.LabelKeys) == 0 {
			t.Errorf("descriptor %s lacks help or label keys", d.Name)
		}
		have[d.Name] = true
	}
	for _, n := range critestMetrics {
		if !have[n] {
			t.Errorf("no descriptor for %s", n)
		}
	}
}
