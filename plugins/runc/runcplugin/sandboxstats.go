package runcplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/plugins/runc/internal/cgroups"
	"github.com/berth-cri/berth/plugins/runc/internal/ociruntime"
	"github.com/berth-cri/berth/plugins/runc/internal/sandbox"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

var (
	hierarchyOnce sync.Once
	hierarchy     *cgroups.Hierarchy
	hierarchyErr  error
)

// cgroupHierarchy detects the host's cgroup mounts once.
func cgroupHierarchy() (*cgroups.Hierarchy, error) {
	hierarchyOnce.Do(func() { hierarchy, hierarchyErr = cgroups.Detect() })
	return hierarchy, hierarchyErr
}

// podCgroup resolves a sandbox's cgroup parent in the hierarchy.
func podCgroup(parent string) (*cgroups.Hierarchy, string, error) {
	if parent == "" {
		return nil, "", status.Error(codes.InvalidArgument, "cgroup_parent is empty")
	}
	path, err := cgroups.ExpandSlice(parent)
	if err != nil {
		return nil, "", status.Errorf(codes.InvalidArgument, "cgroup_parent: %v", err)
	}
	h, err := cgroupHierarchy()
	if err != nil {
		return nil, "", status.Errorf(codes.Internal, "cgroups: %v", err)
	}
	return h, path, nil
}

func statsResponse(s *cgroups.Stats) *runtimev1.StatsResponse {
	return &runtimev1.StatsResponse{TimestampUnixNano: time.Now().UnixNano(),
		CpuUsageNanoCoresTotal: s.CPUTotalNanos, CpuUserNanos: s.CPUUserNanos, CpuSystemNanos: s.CPUSystemNanos,
		CpuPeriods: s.CPUPeriods, CpuThrottledPeriods: s.CPUThrottledPeriods, CpuThrottledNanos: s.CPUThrottledNanos,
		MemoryWorkingSetBytes: s.MemoryWorkingSet, MemoryUsageBytes: s.MemoryUsage, MemoryRssBytes: s.MemoryRSS,
		MemoryCacheBytes: s.MemoryCache, MemoryMappedFileBytes: s.MemoryMappedFile, MemorySwapBytes: s.MemorySwap,
		MemoryMaxUsageBytes: s.MemoryMaxUsage, MemoryFailcnt: s.MemoryFailcnt, MemoryLimitBytes: s.MemoryLimit,
		MemoryPageFaults: s.PageFaults, MemoryMajorPageFaults: s.MajorPageFaults, OomEvents: s.OOMEvents,
		PidsCurrent: s.Pids, PidsLimit: s.PidsLimit, MemoryKernelBytes: s.MemoryKernel,
		FileDescriptors: s.FileDescriptors, Sockets: s.Sockets, Threads: s.Threads, Blkio: blkioProto(s.Blkio)}
}

func blkioProto(ds []cgroups.Blkio) []*runtimev1.BlkioDevice {
	out := make([]*runtimev1.BlkioDevice, 0, len(ds))
	for _, d := range ds {
		out = append(out, &runtimev1.BlkioDevice{Major: d.Major, Minor: d.Minor, Name: d.Name,
			ReadBytes: d.ReadBytes, WriteBytes: d.WriteBytes, Reads: d.Reads, Writes: d.Writes})
	}
	return out
}

// cgroupStats reads a runc container's usage from its cgroup, found from
// its init's PID: no runtime command to run, so ListContainerStats of a
// busy node stays cheap. ok is false when pid is not (any more) a process
// of container id, for the caller to ask the runtime instead.
func cgroupStats(id string, pid int) (*cgroups.Stats, bool) {
	if pid <= 0 {
		return nil, false
	}
	h, err := cgroupHierarchy()
	if err != nil {
		return nil, false
	}
	path, err := cgroups.ForPID(pid)
	// The cgroup runc made for the container is named after it (cgroupfs:
	// PARENT/ID; systemd: berth-ID.scope): a recycled PID never matches.
	if err != nil || !strings.Contains(path, id) {
		return nil, false
	}
	st, err := h.ReadStats(path)
	if err != nil {
		return nil, false
	}
	h.ReadProcesses(path, st)
	return st, true
}

// SandboxStats reads the pod's cgroup parent (its init and every
// container) and the interfaces of its network namespace. A parent that
// does not exist yet (no container has started) reports zero usage.
func (p *Plugin) SandboxStats(ctx context.Context, r *runtimev1.SandboxStatsRequest) (*runtimev1.SandboxStatsResponse, error) {
	h, path, err := podCgroup(r.GetCgroupParent())
	if err != nil {
		return nil, err
	}
	st, err := h.ReadStats(path)
	if errors.Is(err, cgroups.ErrNotFound) {
		st, err = &cgroups.Stats{}, nil
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "sandbox %s: %v", r.GetSandboxId(), err)
	}
	resp := &runtimev1.SandboxStatsResponse{Usage: statsResponse(st)}
	hd, err := p.handleFor(r.GetSandboxId(), r.GetHandle())
	if err != nil {
		return nil, err
	}
	if netns := hd.Namespaces[sandbox.NetNS]; netns != "" {
		ifs, err := sandbox.Interfaces(netns)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "sandbox %s: network statistics: %v", r.GetSandboxId(), err)
		}
		for _, i := range ifs {
			resp.Interfaces = append(resp.Interfaces, &runtimev1.InterfaceStats{Name: i.Name,
				RxBytes: i.RxBytes, RxPackets: i.RxPackets, RxErrors: i.RxErrors, RxDropped: i.RxDrops,
				TxBytes: i.TxBytes, TxPackets: i.TxPackets, TxErrors: i.TxErrors, TxDropped: i.TxDrops})
		}
	}
	return resp, nil
}

// UpdateSandbox applies pod-level limits to the pod's cgroup parent.
func (p *Plugin) UpdateSandbox(ctx context.Context, r *runtimev1.UpdateSandboxRequest) (*runtimev1.UpdateSandboxResponse, error) {
	h, path, err := podCgroup(r.GetCgroupParent())
	if err != nil {
		return nil, err
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(r.GetResourcesJson(), &res); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "resources_json: %v", err)
	}
	var set cgroups.Resources
	if c := res.CPU; c != nil {
		if c.Shares != nil {
			set.CPUShares = *c.Shares
		}
		if c.Quota != nil {
			set.CPUQuota = *c.Quota
		}
		if c.Period != nil {
			set.CPUPeriod = *c.Period
		}
		set.CPUSetCPUs, set.CPUSetMems = c.Cpus, c.Mems
	}
	if m := res.Memory; m != nil && m.Limit != nil {
		set.MemoryLimit = *m.Limit
	}
	if pl := res.Pids; pl != nil && pl.Limit != nil {
		set.PidsLimit = *pl.Limit
	}
	if err := h.Set(path, set); err != nil {
		return nil, status.Errorf(codes.Internal, "sandbox %s: %v", r.GetSandboxId(), err)
	}
	return &runtimev1.UpdateSandboxResponse{}, nil
}

// joinPodCgroup moves the pod init into the pod's cgroupfs parent.
func joinPodCgroup(parent string, pid int) error {
	h, path, err := podCgroup(parent)
	if err != nil {
		return err
	}
	if err := h.Join(path, pid); err != nil {
		return fmt.Errorf("pod init into cgroup %s: %w", parent, err)
	}
	return nil
}

// SandboxStatus reports a pod dead once nothing can join it any more: the
// pod init of a runc pod (its PID namespace dies with it, and every process
// in it), or the root container of a gVisor pod.
func (p *Plugin) SandboxStatus(ctx context.Context, r *runtimev1.SandboxStatusRequest) (*runtimev1.SandboxStatusResponse, error) {
	h, err := p.handleFor(r.GetSandboxId(), r.GetHandle())
	if err != nil {
		return nil, err
	}
	if h.Gvisor {
		c, err := p.classFor(r.GetOptions())
		if err != nil {
			return nil, err
		}
		st, err := c.rt.State(ctx, r.GetSandboxId())
		if err != nil && !errors.Is(err, ociruntime.ErrNotExist) {
			return nil, rpcErr(err)
		}
		if err != nil || st.Status != "running" {
			why := "it does not exist"
			if err == nil {
				why = "it is " + st.Status
			}
			return &runtimev1.SandboxStatusResponse{Reason: "SandboxExited",
				Message: "the gVisor sandbox's root container is not running (" + why + ")"}, nil
		}
		return &runtimev1.SandboxStatusResponse{Ready: true}, nil
	}
	if pidns := h.Namespaces[sandbox.PIDNS]; pidns != "" && !sandbox.InitHolds(h.InitPID, pidns) {
		return &runtimev1.SandboxStatusResponse{Reason: "PodInitExited",
			Message: fmt.Sprintf("the pod init (PID %d) holding the pod's PID namespace is gone, and every process of the pod with it", h.InitPID)}, nil
	}
	return &runtimev1.SandboxStatusResponse{Ready: true}, nil
}
