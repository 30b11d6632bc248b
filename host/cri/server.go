// Package cri serves the Kubernetes Container Runtime Interface on the host's
// socket. Handlers validate their input, then orchestrate plugins through the
// plugins.Manager; they hold no runtime logic of their own.
//
// RPCs not implemented yet answer codes.Unimplemented (the embedded
// Unimplemented servers), which kubelet and crictl report as such.
package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/host/config"
	"github.com/berth-cri/berth/host/plugins"
	"github.com/berth-cri/berth/host/state"
	"github.com/berth-cri/berth/internal/version"
	"github.com/berth-cri/berth/sdk"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

// RuntimeName is what Version reports.
const RuntimeName = "berth"

// Server implements the CRI RuntimeService and ImageService.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	cfg     *config.Config
	plugins *plugins.Manager
	store   *state.Store
	log     *slog.Logger

	featuresMu sync.Mutex
	features   map[string]cachedFeatures // by runtime handler
	locks      keyedMutex
	events     events
}

// New returns a CRI server backed by the plugin manager and the state store.
func New(cfg *config.Config, mgr *plugins.Manager, store *state.Store, log *slog.Logger) *Server {
	return &Server{cfg: cfg, plugins: mgr, store: store, log: log}
}

// Register adds both CRI services to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}

// Version implements the CRI Version RPC.
func (s *Server) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           "0.1.0", // the kubelet runtime API version, as CRI-O and containerd report it
		RuntimeName:       RuntimeName,
		RuntimeVersion:    version.Version,
		RuntimeApiVersion: "v1",
	}, nil
}

// readiness is what a CRI condition needs of a plugin: running, healthy,
// and announcing the capabilities the condition stands for.
type readiness struct {
	inst *plugins.Instance
	caps []sdk.Capability
}

// Status reports RuntimeReady (the default runtime class's plugin, the
// storage plugin and the monitor plugin are running, healthy and able to run
// pods) and NetworkReady (the network plugin is running, healthy and can set
// up pod networks), each with a reason when not.
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	rt, _, err := s.plugins.Runtime("")
	if err != nil {
		return nil, err
	}
	storage, err := s.plugins.Storage()
	if err != nil {
		return nil, err
	}
	monitor, err := s.plugins.Monitor()
	if err != nil {
		return nil, err
	}
	network, err := s.plugins.Network()
	if err != nil {
		return nil, err
	}
	runtimeCond := condition(runtimeapi.RuntimeReady, "RuntimeNotReady",
		readiness{rt, []sdk.Capability{sdk.CapSandbox, sdk.CapContainers}},
		readiness{storage, []sdk.Capability{sdk.CapImages, sdk.CapRootfs}},
		readiness{monitor, []sdk.Capability{sdk.CapWatch}})
	netCond := condition(runtimeapi.NetworkReady, "NetworkPluginNotReady",
		readiness{network, []sdk.Capability{sdk.CapPodNetwork}})
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{runtimeCond, netCond}},
		Features: &runtimeapi.RuntimeFeatures{
			// host/ocispec implements Merge and Strict.
			SupplementalGroupsPolicy: true,
		},
	}
	for _, h := range s.cfg.RuntimeClasses {
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtimeapi.RuntimeHandler{
			Name:     h.Handler,
			Features: s.handlerFeatures(ctx, h.Handler),
		})
	}
	// kubelet wants the default handler listed under the empty name too.
	resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtimeapi.RuntimeHandler{Name: "", Features: s.handlerFeatures(ctx, "")})
	sortHandlers(resp.RuntimeHandlers)
	if req.GetVerbose() {
		info, err := s.verboseInfo()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "build verbose status: %v", err)
		}
		resp.Info = info
	}
	return resp, nil
}

// condition is true when every plugin is ready; otherwise it carries the
// first plugin's reason.
func condition(typ, capReason string, rs ...readiness) *runtimeapi.RuntimeCondition {
	for _, r := range rs {
		if ok, reason, msg := r.inst.Ready(); !ok {
			return &runtimeapi.RuntimeCondition{Type: typ, Reason: reason, Message: msg}
		}
		for _, c := range r.caps {
			if !r.inst.HasCapability(c) {
				return &runtimeapi.RuntimeCondition{Type: typ, Reason: capReason,
					Message: fmt.Sprintf("plugin %q does not implement %q yet", r.inst.Name(), c)}
			}
		}
	}
	return &runtimeapi.RuntimeCondition{Type: typ, Status: true}
}

// VerbosePluginsKey is the Status verbose info key holding the plugin table,
// a JSON object of plugins.Snapshot by plugin name (`berth plugins` reads it).
const VerbosePluginsKey = "plugins"

func (s *Server) verboseInfo() (map[string]string, error) {
	// An object keyed by plugin name, so that crictl info shows it as JSON.
	byName := map[string]plugins.Snapshot{}
	for _, snap := range s.plugins.Snapshots() {
		byName[snap.Name] = snap
	}
	pl, err := json.Marshal(byName)
	if err != nil {
		return nil, err
	}
	cfg, err := json.Marshal(s.cfg)
	if err != nil {
		return nil, err
	}
	return map[string]string{VerbosePluginsKey: string(pl), "config": string(cfg)}, nil
}

// RuntimeConfig reports the cgroup driver, which kubelet must match.
func (s *Server) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.cfg.Host.CgroupDriver == "systemd" {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// UnaryInterceptor logs every call, turns panics into codes.Internal and
// makes sure every error leaving the server carries a gRPC code.
func UnaryInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in CRI handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s: %v", info.FullMethod, r)
			}
			if err != nil {
				if _, ok := status.FromError(err); !ok {
					err = status.Error(codes.Unknown, err.Error())
				}
				log.Info("CRI call failed", "method", info.FullMethod, "code", status.Code(err).String(), "error", err, "duration", time.Since(start))
				return
			}
			log.Debug("CRI call", "method", info.FullMethod, "duration", time.Since(start))
		}()
		return handler(ctx, req)
	}
}

// StreamInterceptor is UnaryInterceptor for streaming RPCs.
func StreamInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in CRI stream handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s: %v", info.FullMethod, r)
			}
			if err != nil {
				if _, ok := status.FromError(err); !ok {
					err = status.Error(codes.Unknown, err.Error())
				}
				log.Info("CRI stream failed", "method", info.FullMethod, "code", status.Code(err).String(), "error", err)
			}
		}()
		return handler(srv, ss)
	}
}

func sortHandlers(hs []*runtimeapi.RuntimeHandler) {
	slices.SortFunc(hs, func(a, b *runtimeapi.RuntimeHandler) int { return strings.Compare(a.Name, b.Name) })
}

// featuresTTL is how long a runtime class's features are trusted before
// the plugin is asked again (a plugin may be upgraded under a running
// host).
const featuresTTL = time.Minute

type cachedFeatures struct {
	f  *runtimeapi.RuntimeHandlerFeatures
	at time.Time
}

// handlerFeatures is what a runtime class can do, from its plugin
// (nothing, when the plugin cannot say).
func (s *Server) handlerFeatures(ctx context.Context, handler string) *runtimeapi.RuntimeHandlerFeatures {
	s.featuresMu.Lock()
	c, ok := s.features[handler]
	s.featuresMu.Unlock()
	if ok && time.Since(c.at) < featuresTTL {
		return c.f
	}
	f := &runtimeapi.RuntimeHandlerFeatures{}
	rt, rc, err := s.plugins.Runtime(handler)
	if err != nil || rt.Require(sdk.CapFeatures) != nil {
		return f
	}
	opts, err := runtimeOptions(rc.Handler, rc.Config)
	if err != nil {
		return f
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := runtimev1.NewRuntimeClient(rt.Conn).Features(cctx, &runtimev1.FeaturesRequest{Options: opts})
	if err != nil {
		return f
	}
	f.RecursiveReadOnlyMounts, f.UserNamespaces = resp.GetRecursiveReadOnlyMounts(), resp.GetUserNamespaces()
	s.featuresMu.Lock()
	if s.features == nil {
		s.features = map[string]cachedFeatures{}
	}
	s.features[handler] = cachedFeatures{f: f, at: time.Now()}
	s.featuresMu.Unlock()
	return f
}
