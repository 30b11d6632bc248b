package cri

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/host/state"
	monitorv1 "github.com/berth-cri/berth/sdk/proto/monitor/v1"
)

// streamBatch is how many items one list-streaming message carries, so a
// node with many objects stays under the gRPC message size limit.
const streamBatch = 100

func sendBatches[T any, R any](items []T, wrap func([]T) *R, send func(*R) error) error {
	for start := 0; start < len(items); start += streamBatch {
		if err := send(wrap(items[start:min(start+streamBatch, len(items))])); err != nil {
			return err
		}
	}
	return nil
}

// StreamPodSandboxes is ListPodSandbox in batches.
func (s *Server) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
	resp, err := s.ListPodSandbox(stream.Context(), &runtimeapi.ListPodSandboxRequest{Filter: req.GetFilter()})
	if err != nil {
		return err
	}
	return sendBatches(resp.Items, func(b []*runtimeapi.PodSandbox) *runtimeapi.StreamPodSandboxesResponse {
		return &runtimeapi.StreamPodSandboxesResponse{PodSandboxes: b}
	}, stream.Send)
}

// StreamContainers is ListContainers in batches.
func (s *Server) StreamContainers(req *runtimeapi.StreamContainersRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	resp, err := s.ListContainers(stream.Context(), &runtimeapi.ListContainersRequest{Filter: req.GetFilter()})
	if err != nil {
		return err
	}
	return sendBatches(resp.Containers, func(b []*runtimeapi.Container) *runtimeapi.StreamContainersResponse {
		return &runtimeapi.StreamContainersResponse{Containers: b}
	}, stream.Send)
}

// StreamContainerStats is ListContainerStats in batches.
func (s *Server) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	resp, err := s.ListContainerStats(stream.Context(), &runtimeapi.ListContainerStatsRequest{Filter: req.GetFilter()})
	if err != nil {
		return err
	}
	return sendBatches(resp.Stats, func(b []*runtimeapi.ContainerStats) *runtimeapi.StreamContainerStatsResponse {
		return &runtimeapi.StreamContainerStatsResponse{ContainerStats: b}
	}, stream.Send)
}

// CheckpointContainer is not supported.
func (s *Server) CheckpointContainer(context.Context, *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	return nil, status.Error(codes.Unimplemented, "container checkpointing (CRIU) is not supported by berth")
}

// events fans container events out to GetContainerEvents subscribers.
type events struct {
	mu   sync.Mutex
	subs map[chan *runtimeapi.ContainerEventResponse]struct{}
}

func (e *events) subscribe() (chan *runtimeapi.ContainerEventResponse, func()) {
	ch := make(chan *runtimeapi.ContainerEventResponse, 256)
	e.mu.Lock()
	if e.subs == nil {
		e.subs = map[chan *runtimeapi.ContainerEventResponse]struct{}{}
	}
	e.subs[ch] = struct{}{}
	e.mu.Unlock()
	return ch, func() {
		e.mu.Lock()
		delete(e.subs, ch)
		e.mu.Unlock()
	}
}

// publish never blocks: a subscriber too slow to keep 256 events loses
// some, as kubelet's evented PLEG tolerates (it relists periodically).
func (e *events) publish(ev *runtimeapi.ContainerEventResponse) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// emit publishes a container event with the pod's status and its
// containers' statuses, as kubelet's evented PLEG wants them.
func (s *Server) emit(ctx context.Context, containerID, sandboxID string, typ runtimeapi.ContainerEventType) {
	ev := &runtimeapi.ContainerEventResponse{ContainerId: containerID, ContainerEventType: typ, CreatedAt: nowNano()}
	if ps, err := s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sandboxID}); err == nil {
		ev.PodSandboxStatus = ps.Status
	}
	if cs, err := s.store.Containers(sandboxID); err == nil {
		for _, c := range cs {
			if st, err := s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.ID}); err == nil {
				ev.ContainersStatuses = append(ev.ContainersStatuses, st.Status)
			}
		}
	}
	s.events.publish(ev)
}

// GetContainerEvents streams container lifecycle events.
func (s *Server) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	ch, cancel := s.events.subscribe()
	defer cancel()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev := <-ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// WatchExits turns the monitor's exit events into CONTAINER_STOPPED events
// (re-subscribing when the monitor restarts) until ctx ends.
func (s *Server) WatchExits(ctx context.Context) {
	for ctx.Err() == nil {
		mon, err := s.monitor()
		if err == nil {
			var stream grpc.ServerStreamingClient[monitorv1.Event]
			stream, err = mon.Events(ctx, &monitorv1.EventsRequest{})
			for err == nil {
				var ev *monitorv1.Event
				if ev, err = stream.Recv(); err != nil {
					break
				}
				if ev.GetType() != monitorv1.Event_TYPE_EXITED {
					continue
				}
				if c, cerr := s.store.Container(ev.GetContainerId()); cerr == nil {
					s.refresh(ctx, c)
					s.emit(ctx, c.ID, c.SandboxID, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
					if c.Phase == state.PhaseExited {
						s.releaseRuntime(c)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
