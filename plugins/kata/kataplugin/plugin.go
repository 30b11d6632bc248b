// Package kataplugin is Berth's VM-isolated runtime plugin. It drives a
// containerd shim v2 binary (containerd-shim-kata-v2 for Kata Containers;
// any shim v2, such as containerd-shim-runc-v2, speaks the same API).
//
// Status: the plugin starts, configures and reports whether its shim binary
// is installed. The container RPCs come with the Kata work and answer
// codes.Unimplemented until then; Info lists no container capability.
package kataplugin

import (
	"context"
	"fmt"
	"os/exec"
	"sync"

	"github.com/berth-cri/berth/internal/version"
	"github.com/berth-cri/berth/sdk"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

// Config is the plugin's [plugins.NAME.config] table.
type Config struct {
	// Shim is the shim v2 binary used when a runtime class names none.
	Shim string `json:"shim"`
}

// Plugin implements sdk.RuntimePlugin.
type Plugin struct {
	runtimev1.UnimplementedRuntimeServer

	mu      sync.Mutex
	cfg     Config
	shim    string
	lookErr error
}

// New returns an unconfigured plugin.
func New() *Plugin { return &Plugin{cfg: Config{Shim: "containerd-shim-kata-v2"}} }

var _ sdk.RuntimePlugin = (*Plugin)(nil)

// Info implements sdk.Base.
func (p *Plugin) Info() sdk.Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	attrs := map[string]string{"shim": p.cfg.Shim}
	if p.shim != "" {
		attrs["shim_path"] = p.shim
	}
	return sdk.Info{
		Name:          "kata",
		Kind:          sdk.KindRuntime,
		PluginVersion: version.Version,
		Capabilities:  []sdk.Capability{},
		Attributes:    attrs,
	}
}

// Configure implements sdk.Base.
func (p *Plugin) Configure(_ context.Context, c sdk.Config) error {
	cfg := Config{Shim: "containerd-shim-kata-v2"}
	if err := sdk.DecodeConfig(c.Raw, &cfg); err != nil {
		return err
	}
	path, err := exec.LookPath(cfg.Shim)
	if err != nil {
		err = fmt.Errorf("shim v2 binary %q not found: %w", cfg.Shim, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg, p.shim, p.lookErr = cfg, path, err
	return nil
}

// Health implements sdk.Base: the shim binary must be installed.
func (p *Plugin) Health(context.Context) sdk.Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lookErr != nil {
		return sdk.Health{Reason: "ShimBinaryMissing", Message: p.lookErr.Error()}
	}
	return sdk.Healthy
}
