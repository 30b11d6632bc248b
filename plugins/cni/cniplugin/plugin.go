// Package cniplugin is Berth's network plugin: pod networking with the CNI
// plugins on disk, configured from a CNI config directory.
//
// Status: the plugin starts, configures and reports health the way kubelet
// expects of a CRI runtime's network: not ready until a CNI network config
// exists. Pod network RPCs come with the networking work and answer
// codes.Unimplemented until then; Info lists no capability.
package cniplugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/berth-cri/berth/internal/version"
	"github.com/berth-cri/berth/sdk"
	networkv1 "github.com/berth-cri/berth/sdk/proto/network/v1"
)

// Config is the plugin's [plugins.NAME.config] table.
type Config struct {
	BinDirs []string `json:"bin_dirs"`
	ConfDir string   `json:"conf_dir"`
}

// Plugin implements sdk.NetworkPlugin.
type Plugin struct {
	networkv1.UnimplementedNetworkServer

	mu  sync.Mutex
	cfg Config
}

// New returns an unconfigured plugin.
func New() *Plugin { return &Plugin{cfg: defaults()} }

func defaults() Config {
	return Config{BinDirs: []string{"/usr/lib/cni", "/opt/cni/bin"}, ConfDir: "/etc/cni/net.d"}
}

var _ sdk.NetworkPlugin = (*Plugin)(nil)

// Info implements sdk.Base.
func (p *Plugin) Info() sdk.Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	return sdk.Info{
		Name:          "cni",
		Kind:          sdk.KindNetwork,
		PluginVersion: version.Version,
		Capabilities:  []sdk.Capability{},
		Attributes:    map[string]string{"conf_dir": p.cfg.ConfDir, "bin_dirs": strings.Join(p.cfg.BinDirs, ":")},
	}
}

// Configure implements sdk.Base.
func (p *Plugin) Configure(_ context.Context, c sdk.Config) error {
	cfg := defaults()
	if err := sdk.DecodeConfig(c.Raw, &cfg); err != nil {
		return err
	}
	if !filepath.IsAbs(cfg.ConfDir) {
		return fmt.Errorf("plugin config: conf_dir %q must be absolute", cfg.ConfDir)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg = cfg
	return nil
}

// Health implements sdk.Base: the network is ready once a CNI config
// exists, as kubelet's NetworkReady condition expects.
func (p *Plugin) Health(context.Context) sdk.Health {
	p.mu.Lock()
	cfg := p.cfg
	p.mu.Unlock()
	confs, err := configFiles(cfg.ConfDir)
	if err != nil || len(confs) == 0 {
		return sdk.Health{Reason: "NetworkPluginNotReady", Message: fmt.Sprintf("Network plugin returns error: cni plugin not initialized: no network config found in %s", cfg.ConfDir)}
	}
	return sdk.Healthy
}

// configFiles lists CNI config files in the order libcni uses.
func configFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
			if !e.IsDir() {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
