// Package overlayplugin is Berth's storage plugin: images and container root
// filesystems on containers/image and containers/storage (the overlay driver
// by default, vfs for filesystems without overlay support).
package overlayplugin

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/internal/version"
	"github.com/berth-cri/berth/plugins/overlay/internal/images"
	"github.com/berth-cri/berth/sdk"
	storagev1 "github.com/berth-cri/berth/sdk/proto/storage/v1"
)

// Config is the plugin's [plugins.NAME.config] table.
type Config struct {
	// Driver is the containers/storage graph driver: "overlay" or "vfs".
	Driver string `json:"driver"`
	// GraphRoot and RunRoot default to directories the host reserves for
	// the plugin.
	GraphRoot string `json:"graph_root"`
	RunRoot   string `json:"run_root"`
	// RegistriesConf and PolicyJSON override /etc/containers/{registries.conf,policy.json};
	// without either, Berth's defaults apply (short names on docker.io; accept any image).
	RegistriesConf string `json:"registries_conf"`
	PolicyJSON     string `json:"policy_json"`
	// PullProgressTimeout cancels a pull that moves no byte for this long
	// (Go duration, "0" disables). Default 5m, as containerd.
	PullProgressTimeout string `json:"pull_progress_timeout"`
	// PinnedImages are image names (globs allowed) kubelet's GC must keep.
	PinnedImages []string `json:"pinned_images"`
	// PlainHTTPLoopback (default true) reaches registries on loopback
	// addresses over plain HTTP without a registries.conf entry.
	PlainHTTPLoopback *bool `json:"plain_http_loopback"`
}

// Plugin implements sdk.StoragePlugin.
type Plugin struct {
	storagev1.UnimplementedStorageServer

	mu     sync.Mutex
	cfg    Config
	svc    *images.Service
	health sdk.Health
	log    hclog.Logger
}

// New returns an unconfigured plugin.
func New() *Plugin {
	return &Plugin{
		health: sdk.Health{Reason: "NotConfigured", Message: "the host has not configured the plugin yet"},
		log:    hclog.NewNullLogger(),
	}
}

var _ sdk.StoragePlugin = (*Plugin)(nil)

// Info implements sdk.Base.
func (p *Plugin) Info() sdk.Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	return sdk.Info{
		Name:          "overlay",
		Kind:          sdk.KindStorage,
		PluginVersion: version.Version,
		Capabilities:  []sdk.Capability{sdk.CapImages, sdk.CapRootfs},
		Attributes:    map[string]string{"driver": p.cfg.Driver, "graph_root": p.cfg.GraphRoot},
	}
}

// Configure implements sdk.Base: it opens the store. Configuring again with
// the same settings (after a host restart) keeps the open store.
func (p *Plugin) Configure(_ context.Context, c sdk.Config) error {
	cfg := Config{Driver: "overlay", PullProgressTimeout: "5m"}
	if err := sdk.DecodeConfig(c.Raw, &cfg); err != nil {
		return err
	}
	if cfg.Driver != "overlay" && cfg.Driver != "vfs" {
		return fmt.Errorf("plugin config: driver %q is not supported (want overlay or vfs)", cfg.Driver)
	}
	timeout, err := time.ParseDuration(cfg.PullProgressTimeout)
	if err != nil || timeout < 0 {
		return fmt.Errorf("plugin config: pull_progress_timeout %q is not a duration", cfg.PullProgressTimeout)
	}
	if cfg.GraphRoot == "" {
		cfg.GraphRoot = filepath.Join(c.StateDir, "storage")
	}
	if cfg.RunRoot == "" {
		cfg.RunRoot = filepath.Join(c.RunDir, "storage")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.Logger != nil {
		p.log = c.Logger
	}
	if p.svc != nil {
		if sameStore(p.cfg, cfg) {
			return nil
		}
		if err := p.svc.Close(); err != nil {
			p.log.Warn("closing the previous store", "error", err)
		}
		p.svc = nil
	}
	svc, err := images.New(images.Options{
		Driver: cfg.Driver, GraphRoot: cfg.GraphRoot, RunRoot: cfg.RunRoot,
		RegistriesConf: cfg.RegistriesConf, PolicyJSON: cfg.PolicyJSON,
		PullProgressTimeout: timeout, PinnedImages: cfg.PinnedImages, Logger: p.log,
		PlainHTTPLoopback: cfg.PlainHTTPLoopback == nil || *cfg.PlainHTTPLoopback,
	})
	if err != nil {
		p.health = sdk.Health{Reason: "StorageUnavailable", Message: err.Error()}
		return err
	}
	p.cfg, p.svc, p.health = cfg, svc, sdk.Healthy
	return nil
}

func sameStore(a, b Config) bool {
	return a.Driver == b.Driver && a.GraphRoot == b.GraphRoot && a.RunRoot == b.RunRoot &&
		a.RegistriesConf == b.RegistriesConf && a.PolicyJSON == b.PolicyJSON &&
		a.PullProgressTimeout == b.PullProgressTimeout && fmt.Sprint(a.PinnedImages) == fmt.Sprint(b.PinnedImages) &&
		(a.PlainHTTPLoopback == nil) == (b.PlainHTTPLoopback == nil) && (a.PlainHTTPLoopback == nil || *a.PlainHTTPLoopback == *b.PlainHTTPLoopback)
}

// Health implements sdk.Base.
func (p *Plugin) Health(context.Context) sdk.Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}

// Close releases the store; the multi-call binary's plugin exits after it.
func (p *Plugin) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.svc == nil {
		return nil
	}
	err := p.svc.Close()
	p.svc = nil
	return err
}

func (p *Plugin) service() (*images.Service, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.svc == nil {
		return nil, status.Error(codes.FailedPrecondition, "storage plugin is not configured")
	}
	return p.svc, nil
}

// grpcErr gives an error its gRPC code.
func grpcErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(images.Code(err), err.Error())
}

func toProto(img *images.Image) *storagev1.Image {
	return &storagev1.Image{
		Id: img.ID, RepoTags: img.RepoTags, RepoDigests: img.RepoDigests,
		Size: img.Size, User: img.User, Pinned: img.Pinned, ConfigJson: img.Config,
	}
}

// PullImage implements storagev1.StorageServer.
func (p *Plugin) PullImage(ctx context.Context, r *storagev1.PullImageRequest) (*storagev1.PullImageResponse, error) {
	svc, err := p.service()
	if err != nil {
		return nil, err
	}
	var auth *images.Auth
	if a := r.GetAuth(); a != nil {
		auth = &images.Auth{Username: a.GetUsername(), Password: a.GetPassword(), Auth: a.GetAuth(),
			ServerAddress: a.GetServerAddress(), IdentityToken: a.GetIdentityToken(), RegistryToken: a.GetRegistryToken()}
	}
	id, err := svc.Pull(ctx, r.GetImage(), auth)
	if err != nil {
		return nil, grpcErr(err)
	}
	return &storagev1.PullImageResponse{ImageRef: id}, nil
}

// ListImages implements storagev1.StorageServer.
func (p *Plugin) ListImages(ctx context.Context, r *storagev1.ListImagesRequest) (*storagev1.ListImagesResponse, error) {
	svc, err := p.service()
	if err != nil {
		return nil, err
	}
	imgs, err := svc.List(ctx, r.GetFilter())
	if err != nil {
		return nil, grpcErr(err)
	}
	resp := &storagev1.ListImagesResponse{}
	for _, img := range imgs {
		resp.Images = append(resp.Images, toProto(img))
	}
	return resp, nil
}

// ImageStatus implements storagev1.StorageServer.
func (p *Plugin) ImageStatus(ctx context.Context, r *storagev1.ImageStatusRequest) (*storagev1.ImageStatusResponse, error) {
	svc, err := p.service()
	if err != nil {
		return nil, err
	}
	img, err := svc.Status(ctx, r.GetImage())
	if err != nil {
		return nil, grpcErr(err)
	}
	if img == nil {
		return &storagev1.ImageStatusResponse{}, nil
	}
	return &storagev1.ImageStatusResponse{Image: toProto(img)}, nil
}

// RemoveImage implements storagev1.StorageServer.
func (p *Plugin) RemoveImage(_ context.Context, r *storagev1.RemoveImageRequest) (*storagev1.RemoveImageResponse, error) {
	svc, err := p.service()
	if err != nil {
		return nil, err
	}
	if err := svc.Remove(r.GetImage()); err != nil {
		return nil, grpcErr(err)
	}
	return &storagev1.RemoveImageResponse{}, nil
}

func usageProto(u *images.FsUsage) *storagev1.FilesystemUsage {
	return &storagev1.FilesystemUsage{TimestampUnixNano: u.At.UnixNano(), Mountpoint: u.Mountpoint, UsedBytes: u.Bytes, InodesUsed: u.Inodes,
		CapacityBytes: u.CapacityBytes, InodesTotal: u.InodesTotal, InodesFree: u.InodesFree}
}

// ImageFsInfo implements storagev1.StorageServer. Images and container
// layers share one store, so both lists carry the same filesystem.
func (p *Plugin) ImageFsInfo(context.Context, *storagev1.ImageFsInfoRequest) (*storagev1.ImageFsInfoResponse, error) {
	svc, err := p.service()
	if err != nil {
		return nil, err
	}
	u, err := svc.FsInfo()
	if err != nil {
		return nil, grpcErr(err)
	}
	return &storagev1.ImageFsInfoResponse{
		ImageFilesystems:     []*storagev1.FilesystemUsage{usageProto(u)},
		ContainerFilesystems: []*storagev1.FilesystemUsage{usageProto(u)},
	}, nil
}

// CreateRootfs implements storagev1.StorageServer.
func (p *Plugin) CreateRootfs(_ context.Context, r *storagev1.CreateRootfsRequest) (*storagev1.CreateRootfsResponse, error) {
	svc, err := p.service()
	if err != nil {
		return nil, err
	}
	id, err := svc.CreateRootfs(r.GetContainerId(), r.GetImage(), r.GetName(), r.GetReadOnly())
	if err != nil {
		return nil, grpcErr(err)
	}
	return &storagev1.CreateRootfsResponse{ImageId: id}, nil
}

// MountRootfs implements storagev1.StorageServer.
func (p *Plugin) MountRootfs(_ context.Context, r *storagev1.MountRootfsRequest) (*storagev1.MountRootfsResponse, error) {
	svc, err := p.service()
	if err != nil {
		return nil, err
	}
	path, err := svc.MountRootfs(r.GetContainerId())
	if err != nil {
		return nil, grpcErr(err)
	}
	return &storagev1.MountRootfsResponse{Path: path}, nil
}

// UnmountRootfs implements storagev1.StorageServer.
func (p *Plugin) UnmountRootfs(_ context.Context, r *storagev1.UnmountRootfsRequest) (*storagev1.UnmountRootfsResponse, error) {
	svc, err := p.service()
	if err != nil {
		return nil, err
	}
	if err := svc.UnmountRootfs(r.GetContainerId()); err != nil {
		return nil, grpcErr(err)
	}
	return &storagev1.UnmountRootfsResponse{}, nil
}

// RemoveRootfs implements storagev1.StorageServer.
func (p *Plugin) RemoveRootfs(_ context.Context, r *storagev1.RemoveRootfsRequest) (*storagev1.RemoveRootfsResponse, error) {
	svc, err := p.service()
	if err != nil {
		return nil, err
	}
	if err := svc.RemoveRootfs(r.GetContainerId()); err != nil {
		return nil, grpcErr(err)
	}
	return &storagev1.RemoveRootfsResponse{}, nil
}

// RootfsUsage implements storagev1.StorageServer.
func (p *Plugin) RootfsUsage(_ context.Context, r *storagev1.RootfsUsageRequest) (*storagev1.RootfsUsageResponse, error) {
	svc, err := p.service()
	if err != nil {
		return nil, err
	}
	u, err := svc.RootfsUsage(r.GetContainerId())
	if err != nil {
		return nil, grpcErr(err)
	}
	return &storagev1.RootfsUsageResponse{Usage: usageProto(u)}, nil
}
