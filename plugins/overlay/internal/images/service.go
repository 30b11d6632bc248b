// Package images is the overlay plugin's image store: pulls with
// containers/image into containers/storage, lookups by name, tag, digest or
// ID the way CRI-O answers them, and container root filesystems.
package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"golang.org/x/sync/singleflight"
)

// Options configure a Service.
type Options struct {
	Driver    string // "overlay" or "vfs"
	GraphRoot string
	RunRoot   string
	// RegistriesConf and PolicyJSON default to /etc/containers/ when those
	// exist, else to Berth's defaults written under RunRoot.
	RegistriesConf string
	PolicyJSON     string
	// PullProgressTimeout cancels a pull that moves no byte for this long
	// (kubelet's image pull progress deadline); 0 disables it.
	PullProgressTimeout time.Duration
	// PinnedImages are names (path.Match patterns) whose images report
	// pinned, which keeps kubelet's image GC away from them.
	PinnedImages []string
	// PlainHTTPLoopback lets registries on a loopback address (127.0.0.0/8,
	// ::1, localhost) be reached over plain HTTP without a registries.conf
	// entry, as the Docker daemon does: that traffic never leaves the node.
	PlainHTTPLoopback bool
	Logger            hclog.Logger
}

// Service owns one containers/storage store.
type Service struct {
	opts   Options
	store  storage.Store
	sys    *types.SystemContext
	policy *signature.Policy
	log    hclog.Logger

	pulls    singleflight.Group
	removeMu sync.Mutex

	// Writable layers removed by RemoveRootfs are deleted in the
	// background (see RemoveRootfs); reaping counts those not yet deleted.
	reap    chan string
	reaping sync.WaitGroup

	cacheMu sync.Mutex
	configs map[string]*imgspecv1.Image // image ID -> OCI config (images are immutable)

	fsMu   sync.Mutex
	fsAt   time.Time
	fsInfo *FsUsage
}

// Default registries.conf and policy.json used when /etc/containers has none.
const (
	defaultRegistriesConf = `# Berth's default: short names resolve on Docker Hub.
unqualified-search-registries = ["docker.io"]
short-name-mode = "disabled"
`
	defaultPolicy = `{"default": [{"type": "insecureAcceptAnything"}]}`
)

// New opens (creating if needed) the store.
func New(opts Options) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	for _, d := range []string{opts.GraphRoot, opts.RunRoot} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create storage directory: %w", err)
		}
	}
	regConf, err := defaultFile(opts.RegistriesConf, "/etc/containers/registries.conf", filepath.Join(opts.RunRoot, "registries.conf"), defaultRegistriesConf)
	if err != nil {
		return nil, err
	}
	policyPath, err := defaultFile(opts.PolicyJSON, "/etc/containers/policy.json", filepath.Join(opts.RunRoot, "policy.json"), defaultPolicy)
	if err != nil {
		return nil, err
	}
	policy, err := signature.NewPolicyFromFile(policyPath)
	if err != nil {
		return nil, fmt.Errorf("signature policy %s: %w", policyPath, err)
	}
	// Every path set, so nothing is read from $HOME or the host's defaults
	// behind the operator's back.
	emptyDir := filepath.Join(opts.RunRoot, "registries.d")
	if err := os.MkdirAll(emptyDir, 0o700); err != nil {
		return nil, err
	}
	sys := &types.SystemContext{
		SystemRegistriesConfPath:    regConf,
		SystemRegistriesConfDirPath: confDirFor(regConf, emptyDir),
		RegistriesDirPath:           emptyDir,
		SignaturePolicyPath:         policyPath,
		AuthFilePath:                filepath.Join(opts.RunRoot, "auth.json"), // never written: kubelet passes credentials per pull
		BlobInfoCacheDir:            filepath.Join(opts.GraphRoot, "cache"),
		BigFilesTemporaryDir:        filepath.Join(opts.GraphRoot, "tmp"),
		DockerRegistryUserAgent:     "berth",
	}
	if err := os.MkdirAll(sys.BigFilesTemporaryDir, 0o700); err != nil {
		return nil, err
	}
	store, err := storage.GetStore(storage.StoreOptions{
		RunRoot:         opts.RunRoot,
		GraphRoot:       opts.GraphRoot,
		GraphDriverName: opts.Driver,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s store in %s: %w", opts.Driver, opts.GraphRoot, err)
	}
	// Containers are volatile (see CreateRootfs): after an unclean shutdown
	// of the machine, layers nobody references any more are removed.
	if err := store.GarbageCollect(); err != nil {
		opts.Logger.Warn("removing unreferenced leftovers from the store", "error", err)
	}
	svc := &Service{
		opts: opts, store: store, sys: sys, policy: policy, log: opts.Logger,
		configs: map[string]*imgspecv1.Image{},
		reap:    make(chan string, 1024),
	}
	go svc.reaper()
	svc.resumeRemovals()
	return svc, nil
}

// resumeRemovals queues the removals a previous process accepted but did
// not finish.
func (s *Service) resumeRemovals() {
	cs, err := s.store.Containers()
	if err != nil {
		s.log.Warn("listing containers for unfinished removals", "error", err)
		return
	}
	for _, c := range cs {
		for _, n := range c.Names {
			if strings.HasPrefix(n, removedPrefix) {
				s.queueDelete(c.ID)
			}
		}
	}
}

// Close waits for pending layer deletions, then releases the store (and its
// mounts of the graph root).
func (s *Service) Close() error {
	s.reaping.Wait()
	_, err := s.store.Shutdown(false)
	return err
}

// Store exposes the underlying store (tests, usage).
func (s *Service) Store() storage.Store { return s.store }

// defaultFile picks the configured file, else the system one, else writes
// Berth's default content to fallback.
func defaultFile(configured, system, fallback, content string) (string, error) {
	if configured != "" {
		if _, err := os.Stat(configured); err != nil {
			return "", fmt.Errorf("configured file: %w", err)
		}
		return configured, nil
	}
	if _, err := os.Stat(system); err == nil {
		return system, nil
	}
	if err := os.WriteFile(fallback, []byte(content), 0o600); err != nil {
		return "", fmt.Errorf("write default %s: %w", fallback, err)
	}
	return fallback, nil
}

// confDirFor uses registries.conf.d next to the system registries.conf, and
// an empty directory for any other file so that drop-ins do not leak in.
func confDirFor(regConf, empty string) string {
	if regConf == "/etc/containers/registries.conf" {
		return "/etc/containers/registries.conf.d"
	}
	return empty
}

// ociConfig returns an image's OCI config, cached by ID.
func (s *Service) ociConfig(ctx context.Context, img *storage.Image) (*imgspecv1.Image, error) {
	s.cacheMu.Lock()
	cfg, ok := s.configs[img.ID]
	s.cacheMu.Unlock()
	if ok {
		return cfg, nil
	}
	ref, err := storageRef(s.store, img.ID)
	if err != nil {
		return nil, err
	}
	image, err := ref.NewImage(ctx, s.sys)
	if err != nil {
		return nil, fmt.Errorf("open image %s: %w", img.ID, err)
	}
	defer image.Close()
	cfg, err = image.OCIConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("read config of image %s: %w", img.ID, err)
	}
	s.cacheMu.Lock()
	s.configs[img.ID] = cfg
	s.cacheMu.Unlock()
	return cfg, nil
}

func (s *Service) forget(id string) {
	s.cacheMu.Lock()
	delete(s.configs, id)
	s.cacheMu.Unlock()
}

// ConfigJSON returns the image's OCI config as JSON.
func (s *Service) ConfigJSON(ctx context.Context, id string) ([]byte, error) {
	img, err := s.store.Image(id)
	if err != nil {
		return nil, err
	}
	cfg, err := s.ociConfig(ctx, img)
	if err != nil {
		return nil, err
	}
	return json.Marshal(cfg)
}

var errNotFound = errors.New("not found")
