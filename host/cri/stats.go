package cri

import (
	"context"
	"encoding/json"
	"strings"

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

// runtimeStats is what the runtime plugin reads of a running container's
// cgroup (nil for a container that is not running or when it fails).
func (s *Server) runtimeStats(ctx context.Context, c *state.Container) *runtimev1.StatsResponse {
	if c.Phase != state.PhaseCreated && c.Phase != state.PhaseRunning {
		return nil
	}
	rtc, opts, _, err := s.containerRuntime(c)
	if err != nil {
		return nil
	}
	st, err := rtc.Stats(ctx, &runtimev1.StatsRequest{ContainerId: c.ID, Options: opts, Pid: int32(c.PID)})
	if err != nil {
		return nil
	}
	return st
}

func criCPU(st *runtimev1.StatsResponse) *runtimeapi.CpuUsage {
	return &runtimeapi.CpuUsage{Timestamp: st.GetTimestampUnixNano(), UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: st.GetCpuUsageNanoCoresTotal()}}
}

func criMemory(st *runtimev1.StatsResponse) *runtimeapi.MemoryUsage {
	m := &runtimeapi.MemoryUsage{Timestamp: st.GetTimestampUnixNano(),
		WorkingSetBytes: &runtimeapi.UInt64Value{Value: st.GetMemoryWorkingSetBytes()},
		UsageBytes:      &runtimeapi.UInt64Value{Value: st.GetMemoryUsageBytes()},
		RssBytes:        &runtimeapi.UInt64Value{Value: st.GetMemoryRssBytes()},
		PageFaults:      &runtimeapi.UInt64Value{Value: st.GetMemoryPageFaults()},
		MajorPageFaults: &runtimeapi.UInt64Value{Value: st.GetMemoryMajorPageFaults()}}
	if l := st.GetMemoryLimitBytes(); l > 0 {
		avail := uint64(0)
		if l > st.GetMemoryWorkingSetBytes() {
			avail = l - st.GetMemoryWorkingSetBytes()
		}
		m.AvailableBytes = &runtimeapi.UInt64Value{Value: avail}
	}
	return m
}

// containerStats gathers a container's CPU and memory (from the runtime's
// view of its cgroup) and its writable layer's usage. A container whose
// cgroup is gone (exited) reports attributes and timestamps only. It also
// returns the runtime's counters (nil when there are none) for metrics.
func (s *Server) containerStats(ctx context.Context, c *state.Container, cfg *runtimeapi.ContainerConfig) (*runtimeapi.ContainerStats, *runtimev1.StatsResponse, *storagev1.FilesystemUsage) {
	now := nowNano()
	out := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{Id: c.ID, Metadata: cfg.GetMetadata(), Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations()},
		Cpu:        &runtimeapi.CpuUsage{Timestamp: now},
		Memory:     &runtimeapi.MemoryUsage{Timestamp: now},
	}
	st := s.runtimeStats(ctx, c)
	if st != nil {
		out.Cpu, out.Memory = criCPU(st), criMemory(st)
		out.Swap = &runtimeapi.SwapUsage{Timestamp: st.GetTimestampUnixNano(), SwapUsageBytes: &runtimeapi.UInt64Value{Value: st.GetMemorySwapBytes()}}
	}
	var fs *storagev1.FilesystemUsage
	if sc, err := s.rootfs(); err == nil {
		if u, err := sc.RootfsUsage(ctx, &storagev1.RootfsUsageRequest{ContainerId: c.ID}); err == nil {
			fs = u.GetUsage()
			out.WritableLayer = &runtimeapi.FilesystemUsage{Timestamp: fs.GetTimestampUnixNano(),
				FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: fs.GetMountpoint()},
				UsedBytes:  &runtimeapi.UInt64Value{Value: fs.GetUsedBytes()},
				InodesUsed: &runtimeapi.UInt64Value{Value: fs.GetInodesUsed()}}
		}
	}
	return out, st, fs
}

// ContainerStats reports one container's resource usage.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, cfg, err := s.container(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, _, _ := s.containerStats(ctx, c, cfg)
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats reports the usage of the containers matching the filter.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	f := req.GetFilter()
	cs, err := s.matchingContainers(ctx, f.GetId(), f.GetPodSandboxId(), f.GetLabelSelector())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListContainerStatsResponse{}
	for _, l := range cs {
		st, _, _ := s.containerStats(ctx, l.c, l.cfg)
		resp.Stats = append(resp.Stats, st)
	}
	return resp, nil
}

// UpdateContainerResources applies new Linux resources to a container.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	res, err := ocispec.Resources(req.GetLinux())
	if err != nil {
		if fe, ok := err.(*ocispec.FieldError); ok {
			return nil, invalid(strings.Replace(fe.Field, "config.linux.resources", "linux", 1), "%s", fe.Msg)
		}
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	c, _, err := s.container(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	defer s.locks.lock(c.ID)()
	if c.Phase != state.PhaseCreated && c.Phase != state.PhaseRunning {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is %s", c.ID, c.Phase)
	}
	rtc, opts, rt, err := s.containerRuntime(c)
	if err != nil {
		return nil, err
	}
	if err := rt.Require(sdk.CapUpdate); err != nil {
		return nil, err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	if _, err := rtc.Update(ctx, &runtimev1.UpdateRequest{ContainerId: c.ID, Options: opts, ResourcesJson: b}); err != nil {
		return nil, err
	}
	// Keep the new resources in the record so ContainerStatus reports them.
	var cfg runtimeapi.ContainerConfig
	if err := protojson.Unmarshal(c.Config, &cfg); err == nil {
		if cfg.Linux == nil {
			cfg.Linux = &runtimeapi.LinuxContainerConfig{}
		}
		cfg.Linux.Resources = req.GetLinux()
		if raw, err := protojson.Marshal(&cfg); err == nil {
			c.Config = raw
			_ = s.store.UpdateContainer(c)
		}
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}
