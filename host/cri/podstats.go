package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/host/ocispec"
	"github.com/berth-cri/berth/host/state"
	"github.com/berth-cri/berth/sdk"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
	storagev1 "github.com/berth-cri/berth/sdk/proto/storage/v1"
)

// podUsage is what one pod's statistics are built from: the runtime's view
// of the pod (cgroup parent, network) and of each container.
type podUsage struct {
	sb         *state.Sandbox
	cfg        *runtimeapi.PodSandboxConfig
	pod        *runtimev1.SandboxStatsResponse // nil: not ready or not reported
	containers []containerUsage
}

type containerUsage struct {
	cfg       *runtimeapi.ContainerConfig
	stats     *runtimeapi.ContainerStats
	raw       *runtimev1.StatsResponse   // nil: not running
	fs        *storagev1.FilesystemUsage // nil: not reported
	startedAt int64                      // unix nanoseconds
}

// podUsageOf gathers a pod's usage. A pod that is not ready reports its
// attributes only.
func (s *Server) podUsageOf(ctx context.Context, sb *state.Sandbox, cfg *runtimeapi.PodSandboxConfig) *podUsage {
	u := &podUsage{sb: sb, cfg: cfg}
	if sb.Phase != state.PhaseReady {
		return u
	}
	if rtc, opts, rt, err := s.runtimeOf(sb); err == nil && rt.Require(sdk.CapSandboxStats) == nil {
		if st, err := rtc.SandboxStats(ctx, &runtimev1.SandboxStatsRequest{SandboxId: sb.ID, Options: opts, Handle: sb.Handle, CgroupParent: sb.CgroupParent}); err == nil {
			u.pod = st
		}
	}
	cs, err := s.matchingContainers(ctx, "", sb.ID, nil)
	if err != nil {
		return u
	}
	for _, l := range cs {
		if l.c.SandboxID != sb.ID {
			continue
		}
		st, raw, fs := s.containerStats(ctx, l.c, l.cfg)
		u.containers = append(u.containers, containerUsage{cfg: l.cfg, stats: st, raw: raw, fs: fs, startedAt: l.c.StartedAt})
	}
	return u
}

func (u *podUsage) criStats() *runtimeapi.PodSandboxStats {
	out := &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: u.sb.ID, Metadata: u.cfg.GetMetadata(), Labels: u.cfg.GetLabels(), Annotations: u.cfg.GetAnnotations()},
		Linux:      &runtimeapi.LinuxPodSandboxStats{},
	}
	for _, c := range u.containers {
		out.Linux.Containers = append(out.Linux.Containers, c.stats)
	}
	if u.pod == nil {
		return out
	}
	st := u.pod.GetUsage()
	ts := st.GetTimestampUnixNano()
	out.Linux.Cpu, out.Linux.Memory = criCPU(st), criMemory(st)
	out.Linux.Process = &runtimeapi.ProcessUsage{Timestamp: ts, ProcessCount: &runtimeapi.UInt64Value{Value: st.GetPidsCurrent()}}
	if ifs := u.pod.GetInterfaces(); len(ifs) > 0 {
		n := &runtimeapi.NetworkUsage{Timestamp: ts}
		for _, i := range ifs {
			if i.GetName() == "lo" {
				continue // pod-local traffic; metrics still have it
			}
			iu := &runtimeapi.NetworkInterfaceUsage{Name: i.GetName(),
				RxBytes: &runtimeapi.UInt64Value{Value: i.GetRxBytes()}, RxErrors: &runtimeapi.UInt64Value{Value: i.GetRxErrors()},
				TxBytes: &runtimeapi.UInt64Value{Value: i.GetTxBytes()}, TxErrors: &runtimeapi.UInt64Value{Value: i.GetTxErrors()}}
			n.Interfaces = append(n.Interfaces, iu)
			// kubelet's default interface is eth0 (what CNI plugins name
			// the pod's interface); otherwise the first one.
			if i.GetName() == "eth0" || n.DefaultInterface == nil {
				n.DefaultInterface = iu
			}
		}
		if len(n.Interfaces) > 0 {
			out.Linux.Network = n
		}
	}
	return out
}

// podsMatching returns the pods (not being created) whose ID starts with
// idPrefix and whose labels match.
func (s *Server) podsMatching(idPrefix string, selector map[string]string) ([]*state.Sandbox, []*runtimeapi.PodSandboxConfig, error) {
	all, err := s.store.Sandboxes()
	if err != nil {
		return nil, nil, status.Errorf(codes.Internal, "%v", err)
	}
	var sbs []*state.Sandbox
	var cfgs []*runtimeapi.PodSandboxConfig
	for _, sb := range all {
		if sb.Phase == state.PhaseCreating || !strings.HasPrefix(sb.ID, idPrefix) {
			continue
		}
		var cfg runtimeapi.PodSandboxConfig
		if err := protojson.Unmarshal(sb.Config, &cfg); err != nil || !labelsMatch(cfg.GetLabels(), selector) {
			continue
		}
		sbs, cfgs = append(sbs, sb), append(cfgs, &cfg)
	}
	return sbs, cfgs, nil
}

// PodSandboxStats reports one pod's usage.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	sb, cfg, err := s.sandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: s.podUsageOf(ctx, sb, cfg).criStats()}, nil
}

// ListPodSandboxStats reports the usage of the pods matching the filter.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	sbs, cfgs, err := s.podsMatching(req.GetFilter().GetId(), req.GetFilter().GetLabelSelector())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListPodSandboxStatsResponse{}
	for i, sb := range sbs {
		resp.Stats = append(resp.Stats, s.podUsageOf(ctx, sb, cfgs[i]).criStats())
	}
	return resp, nil
}

// StreamPodSandboxStats is ListPodSandboxStats in batches.
func (s *Server) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
	resp, err := s.ListPodSandboxStats(stream.Context(), &runtimeapi.ListPodSandboxStatsRequest{Filter: req.GetFilter()})
	if err != nil {
		return err
	}
	return sendBatches(resp.Stats, func(b []*runtimeapi.PodSandboxStats) *runtimeapi.StreamPodSandboxStatsResponse {
		return &runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: b}
	}, stream.Send)
}

// Metrics: cAdvisor's names and labels, as kubelet serves them on
// /metrics/cadvisor when stats come from the CRI (PodAndContainerStatsFromCRI),
// the set critest expects (CRI-O's). The CRI carries integers, so seconds
// are whole seconds, as in CRI-O.

func withLabels(extra ...string) []string {
	return append([]string{"id", "image", "namespace", "pod", "container"}, extra...)
}

var (
	baseLabels      = withLabels()
	cpuLabels       = withLabels("cpu")
	interfaceLabels = withLabels("interface")
	deviceLabels    = withLabels("device")
	blkioLabels     = withLabels("device", "major", "minor", "operation")
	failureLabels   = withLabels("failure_type", "scope")
)

const (
	gauge   = runtimeapi.MetricType_GAUGE
	counter = runtimeapi.MetricType_COUNTER
)

// containerMetric is a series per running container, from the runtime's
// counters, the container's spec and its writable layer.
type containerMetric struct {
	name, help string
	typ        runtimeapi.MetricType
	value      func(c *containerUsage) uint64
}

func seconds(ns uint64) uint64 { return ns / uint64(time.Second) }

func raw(f func(*runtimev1.StatsResponse) uint64) func(*containerUsage) uint64 {
	return func(c *containerUsage) uint64 { return f(c.raw) }
}

func spec(f func(*runtimeapi.LinuxContainerResources) int64) func(*containerUsage) uint64 {
	return func(c *containerUsage) uint64 { return uint64(max(f(c.cfg.GetLinux().GetResources()), 0)) }
}

func layer(f func(*storagev1.FilesystemUsage) uint64) func(*containerUsage) uint64 {
	return func(c *containerUsage) uint64 { return f(c.fs) }
}

var containerMetrics = []containerMetric{
	{"container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", counter,
		raw(func(s *runtimev1.StatsResponse) uint64 { return seconds(s.GetCpuUserNanos()) })},
	{"container_cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds.", counter,
		raw(func(s *runtimev1.StatsResponse) uint64 { return seconds(s.GetCpuSystemNanos()) })},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, raw((*runtimev1.StatsResponse).GetCpuPeriods)},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, raw((*runtimev1.StatsResponse).GetCpuThrottledPeriods)},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", counter,
		raw(func(s *runtimev1.StatsResponse) uint64 { return seconds(s.GetCpuThrottledNanos()) })},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, raw((*runtimev1.StatsResponse).GetMemoryUsageBytes)},
	{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, raw((*runtimev1.StatsResponse).GetMemoryWorkingSetBytes)},
	{"container_memory_rss", "Size of RSS in bytes.", gauge, raw((*runtimev1.StatsResponse).GetMemoryRssBytes)},
	{"container_memory_cache", "Number of bytes of page cache memory.", gauge, raw((*runtimev1.StatsResponse).GetMemoryCacheBytes)},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, raw((*runtimev1.StatsResponse).GetMemoryMappedFileBytes)},
	{"container_memory_swap", "Container swap usage in bytes.", gauge, raw((*runtimev1.StatsResponse).GetMemorySwapBytes)},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", gauge, raw((*runtimev1.StatsResponse).GetMemoryKernelBytes)},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", gauge, raw((*runtimev1.StatsResponse).GetMemoryMaxUsageBytes)},
	{"container_memory_failcnt", "Number of memory usage hits limits.", counter, raw((*runtimev1.StatsResponse).GetMemoryFailcnt)},
	{"container_oom_events_total", "Count of out of memory events observed for the container.", counter, raw((*runtimev1.StatsResponse).GetOomEvents)},
	{"container_processes", "Number of processes running inside the container.", gauge, raw((*runtimev1.StatsResponse).GetPidsCurrent)},
	{"container_threads", "Number of threads running inside the container.", gauge, raw((*runtimev1.StatsResponse).GetThreads)},
	{"container_threads_max", "Maximum number of threads allowed inside the container, 0 for unlimited.", gauge, raw((*runtimev1.StatsResponse).GetPidsLimit)},
	{"container_file_descriptors", "Number of open file descriptors for the container.", gauge, raw((*runtimev1.StatsResponse).GetFileDescriptors)},
	{"container_sockets", "Number of open sockets for the container.", gauge, raw((*runtimev1.StatsResponse).GetSockets)},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", gauge, raw((*runtimev1.StatsResponse).GetMemoryLimitBytes)},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", gauge, spec((*runtimeapi.LinuxContainerResources).GetMemorySwapLimitInBytes)},
	{"container_spec_cpu_period", "CPU period of the container.", gauge, spec((*runtimeapi.LinuxContainerResources).GetCpuPeriod)},
	{"container_spec_cpu_shares", "CPU share of the container.", gauge, spec((*runtimeapi.LinuxContainerResources).GetCpuShares)},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge,
		func(c *containerUsage) uint64 { return uint64(max(c.startedAt, 0)) / uint64(time.Second) }},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge, layer((*storagev1.FilesystemUsage).GetUsedBytes)},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", gauge, layer((*storagev1.FilesystemUsage).GetCapacityBytes)},
	{"container_fs_inodes_total", "Number of Inodes.", gauge, layer((*storagev1.FilesystemUsage).GetInodesTotal)},
	{"container_fs_inodes_free", "Number of available Inodes.", gauge, layer((*storagev1.FilesystemUsage).GetInodesFree)},
}

// deviceMetric is a series per container and block device.
type deviceMetric struct {
	name, help string
	value      func(*runtimev1.BlkioDevice) uint64
}

var deviceMetrics = []deviceMetric{
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read", (*runtimev1.BlkioDevice).GetReadBytes},
	{"container_fs_reads_total", "Cumulative count of reads completed", (*runtimev1.BlkioDevice).GetReads},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written", (*runtimev1.BlkioDevice).GetWriteBytes},
	{"container_fs_writes_total", "Cumulative count of writes completed", (*runtimev1.BlkioDevice).GetWrites},
}

type interfaceMetric struct {
	name, help string
	value      func(*runtimev1.InterfaceStats) uint64
}

var networkMetrics = []interfaceMetric{
	{"container_network_receive_bytes_total", "Cumulative count of bytes received", (*runtimev1.InterfaceStats).GetRxBytes},
	{"container_network_receive_packets_total", "Cumulative count of packets received", (*runtimev1.InterfaceStats).GetRxPackets},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", (*runtimev1.InterfaceStats).GetRxDropped},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", (*runtimev1.InterfaceStats).GetRxErrors},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", (*runtimev1.InterfaceStats).GetTxBytes},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted", (*runtimev1.InterfaceStats).GetTxPackets},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", (*runtimev1.InterfaceStats).GetTxDropped},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", (*runtimev1.InterfaceStats).GetTxErrors},
}

const (
	cpuUsageMetric  = "container_cpu_usage_seconds_total"
	lastSeenMetric  = "container_last_seen"
	blkioMetric     = "container_blkio_device_usage_total"
	failuresMetric  = "container_memory_failures_total"
	podContainerTag = "POD" // cAdvisor's container label for pod-level series
)

// metricDescriptors lists every metric ListPodSandboxMetrics reports.
func metricDescriptors() []*runtimeapi.MetricDescriptor {
	out := []*runtimeapi.MetricDescriptor{
		{Name: cpuUsageMetric, Help: "Cumulative cpu time consumed in seconds.", LabelKeys: cpuLabels},
		{Name: lastSeenMetric, Help: "Last time a container was seen by the exporter", LabelKeys: baseLabels},
		{Name: blkioMetric, Help: "Blkio device bytes usage", LabelKeys: blkioLabels},
		{Name: failuresMetric, Help: "Cumulative count of memory allocation failures.", LabelKeys: failureLabels},
	}
	for _, m := range containerMetrics {
		out = append(out, &runtimeapi.MetricDescriptor{Name: m.name, Help: m.help, LabelKeys: baseLabels})
	}
	for _, m := range deviceMetrics {
		out = append(out, &runtimeapi.MetricDescriptor{Name: m.name, Help: m.help, LabelKeys: deviceLabels})
	}
	for _, m := range networkMetrics {
		out = append(out, &runtimeapi.MetricDescriptor{Name: m.name, Help: m.help, LabelKeys: interfaceLabels})
	}
	return out
}

// ListMetricDescriptors lists the metrics ListPodSandboxMetrics reports.
func (s *Server) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: metricDescriptors()}, nil
}

// metrics turns a pod's usage into metric series: one set per running
// container and the pod's network series under container "POD".
func (u *podUsage) metrics(now int64) *runtimeapi.PodSandboxMetrics {
	md := u.cfg.GetMetadata()
	out := &runtimeapi.PodSandboxMetrics{PodSandboxId: u.sb.ID}
	metric := func(name string, typ runtimeapi.MetricType, labels []string, v uint64) *runtimeapi.Metric {
		return &runtimeapi.Metric{Name: name, Timestamp: now, MetricType: typ, LabelValues: labels, Value: &runtimeapi.UInt64Value{Value: v}}
	}
	with := func(labels []string, extra ...string) []string {
		return append(append([]string{}, labels...), extra...)
	}
	for i := range u.containers {
		c := &u.containers[i]
		if c.raw == nil {
			continue
		}
		labels := []string{c.stats.GetAttributes().GetId(), c.cfg.GetImage().GetImage(), md.GetNamespace(), md.GetName(), c.cfg.GetMetadata().GetName()}
		cm := &runtimeapi.ContainerMetrics{ContainerId: c.stats.GetAttributes().GetId()}
		cm.Metrics = append(cm.Metrics,
			metric(cpuUsageMetric, counter, with(labels, "total"), seconds(c.raw.GetCpuUsageNanoCoresTotal())),
			metric(lastSeenMetric, gauge, labels, uint64(now/int64(time.Second))))
		for _, scope := range []string{"container", "hierarchy"} {
			cm.Metrics = append(cm.Metrics,
				metric(failuresMetric, counter, with(labels, "pgfault", scope), c.raw.GetMemoryPageFaults()),
				metric(failuresMetric, counter, with(labels, "pgmajfault", scope), c.raw.GetMemoryMajorPageFaults()))
		}
		for _, m := range containerMetrics {
			if m.value == nil || (strings.HasPrefix(m.name, "container_fs_") && c.fs == nil) {
				continue
			}
			cm.Metrics = append(cm.Metrics, metric(m.name, m.typ, labels, m.value(c)))
		}
		for _, d := range c.raw.GetBlkio() {
			dev := d.GetName()
			if dev == "" {
				dev = fmt.Sprintf("%d:%d", d.GetMajor(), d.GetMinor())
			}
			maj, min := fmt.Sprint(d.GetMajor()), fmt.Sprint(d.GetMinor())
			cm.Metrics = append(cm.Metrics,
				metric(blkioMetric, counter, with(labels, dev, maj, min, "Read"), d.GetReadBytes()),
				metric(blkioMetric, counter, with(labels, dev, maj, min, "Write"), d.GetWriteBytes()))
			for _, m := range deviceMetrics {
				cm.Metrics = append(cm.Metrics, metric(m.name, counter, with(labels, dev), m.value(d)))
			}
		}
		out.ContainerMetrics = append(out.ContainerMetrics, cm)
	}
	for _, i := range u.pod.GetInterfaces() {
		labels := []string{u.sb.ID, "", md.GetNamespace(), md.GetName(), podContainerTag, i.GetName()}
		for _, m := range networkMetrics {
			out.Metrics = append(out.Metrics, metric(m.name, counter, labels, m.value(i)))
		}
	}
	return out
}

// ListPodSandboxMetrics reports the metrics of every ready pod.
func (s *Server) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	sbs, cfgs, err := s.podsMatching("", nil)
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListPodSandboxMetricsResponse{}
	now := nowNano()
	for i, sb := range sbs {
		if sb.Phase != state.PhaseReady {
			continue
		}
		resp.PodMetrics = append(resp.PodMetrics, s.podUsageOf(ctx, sb, cfgs[i]).metrics(now))
	}
	return resp, nil
}

// StreamPodSandboxMetrics is ListPodSandboxMetrics in batches.
func (s *Server) StreamPodSandboxMetrics(_ *runtimeapi.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
	resp, err := s.ListPodSandboxMetrics(stream.Context(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		return err
	}
	return sendBatches(resp.PodMetrics, func(b []*runtimeapi.PodSandboxMetrics) *runtimeapi.StreamPodSandboxMetricsResponse {
		return &runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: b}
	}, stream.Send)
}

// podResources sums a pod's resources and its overhead into the limits of
// its cgroup parent: shares, quota and memory add up; a dimension the pod
// leaves unlimited stays unlimited.
func podResources(res, overhead *runtimeapi.LinuxContainerResources) *runtimeapi.LinuxContainerResources {
	out := &runtimeapi.LinuxContainerResources{
		CpuShares: res.GetCpuShares() + overhead.GetCpuShares(), CpuPeriod: res.GetCpuPeriod(),
		CpusetCpus: res.GetCpusetCpus(), CpusetMems: res.GetCpusetMems(),
	}
	if res.GetCpuQuota() > 0 {
		out.CpuQuota = res.GetCpuQuota() + max(overhead.GetCpuQuota(), 0)
	}
	if res.GetMemoryLimitInBytes() > 0 {
		out.MemoryLimitInBytes = res.GetMemoryLimitInBytes() + max(overhead.GetMemoryLimitInBytes(), 0)
	}
	return out
}

// ownsCgroup reports whether Berth made the pod's cgroup parent (kubelet
// passes none); kubelet manages the parents it passes itself.
func (s *Server) ownsCgroup(sb *state.Sandbox, cfg *runtimeapi.PodSandboxConfig) bool {
	return cfg.GetLinux().GetCgroupParent() == "" && sb.CgroupParent != ""
}

// applyPodResources writes pod-level limits to a cgroup parent Berth owns.
func (s *Server) applyPodResources(ctx context.Context, sb *state.Sandbox, res *runtimeapi.LinuxContainerResources, field string) error {
	lr, err := ocispec.Resources(res)
	if err != nil {
		if fe, ok := err.(*ocispec.FieldError); ok {
			return invalid(strings.Replace(fe.Field, "config.linux.resources", field, 1), "%s", fe.Msg)
		}
		return status.Errorf(codes.Internal, "%v", err)
	}
	rtc, opts, rt, err := s.runtimeOf(sb)
	if err != nil {
		return err
	}
	if err := rt.Require(sdk.CapSandboxUpdate); err != nil {
		return err
	}
	b, err := json.Marshal(lr)
	if err != nil {
		return status.Errorf(codes.Internal, "%v", err)
	}
	_, err = rtc.UpdateSandbox(ctx, &runtimev1.UpdateSandboxRequest{SandboxId: sb.ID, Options: opts, Handle: sb.Handle, CgroupParent: sb.CgroupParent, ResourcesJson: b})
	return err
}

// UpdatePodSandboxResources records a pod's new resources (in-place pod
// resize) and, when Berth made the pod's cgroup parent, applies them to it.
// kubelet sizes the cgroup parents it creates itself.
func (s *Server) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	for field, r := range map[string]*runtimeapi.LinuxContainerResources{"resources": req.GetResources(), "overhead": req.GetOverhead()} {
		if r == nil {
			continue
		}
		if _, err := ocispec.Resources(r); err != nil {
			if fe, ok := err.(*ocispec.FieldError); ok {
				return nil, invalid(strings.Replace(fe.Field, "config.linux.resources", field, 1), "%s", fe.Msg)
			}
			return nil, status.Errorf(codes.Internal, "%v", err)
		}
	}
	sb, cfg, err := s.sandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	defer s.locks.lock(sb.ID)()
	if sb.Phase != state.PhaseReady {
		return nil, status.Errorf(codes.FailedPrecondition, "pod sandbox %s is not ready", sb.ID)
	}
	if s.ownsCgroup(sb, cfg) && req.GetResources() != nil {
		if err := s.applyPodResources(ctx, sb, podResources(req.GetResources(), req.GetOverhead()), "resources"); err != nil {
			return nil, err
		}
	}
	if cfg.Linux == nil {
		cfg.Linux = &runtimeapi.LinuxPodSandboxConfig{}
	}
	if req.GetResources() != nil {
		cfg.Linux.Resources = req.GetResources()
	}
	if req.GetOverhead() != nil {
		cfg.Linux.Overhead = req.GetOverhead()
	}
	raw, err := protojson.Marshal(cfg)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode config: %v", err)
	}
	sb.Config = raw
	if err := s.store.UpdateSandbox(sb); err != nil {
		return nil, storeErr(err, "sandbox")
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
