// Package overlayplugin is Berth's storage plugin: images and container root
// filesystems on containers/image and containers/storage.
//
// Status: the plugin starts, configures its storage directories and reports
// health. Image and root filesystem RPCs come with the images work and
// answer codes.Unimplemented until then; Info lists no capability.
package overlayplugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/berth-cri/berth/internal/version"
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
	// RegistriesConf and PolicyJSON override /etc/containers/{registries.conf,policy.json}.
	RegistriesConf string `json:"registries_conf"`
	PolicyJSON     string `json:"policy_json"`
}

// Plugin implements sdk.StoragePlugin.
type Plugin struct {
	storagev1.UnimplementedStorageServer

	mu     sync.Mutex
	cfg    Config
	health sdk.Health
}

// New returns an unconfigured plugin.
func New() *Plugin {
	return &Plugin{health: sdk.Health{Reason: "NotConfigured", Message: "the host has not configured the plugin yet"}}
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
		Capabilities:  []sdk.Capability{},
		Attributes:    map[string]string{"driver": p.cfg.Driver, "graph_root": p.cfg.GraphRoot},
	}
}

// Configure implements sdk.Base.
func (p *Plugin) Configure(_ context.Context, c sdk.Config) error {
	cfg := Config{Driver: "overlay"}
	if err := sdk.DecodeConfig(c.Raw, &cfg); err != nil {
		return err
	}
	if cfg.Driver != "overlay" && cfg.Driver != "vfs" {
		return fmt.Errorf("plugin config: driver %q is not supported (want overlay or vfs)", cfg.Driver)
	}
	if cfg.GraphRoot == "" {
		cfg.GraphRoot = filepath.Join(c.StateDir, "storage")
	}
	if cfg.RunRoot == "" {
		cfg.RunRoot = filepath.Join(c.RunDir, "storage")
	}
	health := sdk.Healthy
	for _, d := range []string{cfg.GraphRoot, cfg.RunRoot} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			health = sdk.Health{Reason: "StorageDirUnavailable", Message: err.Error()}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg, p.health = cfg, health
	return nil
}

// Health implements sdk.Base.
func (p *Plugin) Health(context.Context) sdk.Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}
