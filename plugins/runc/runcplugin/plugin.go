// Package runcplugin is Berth's OCI runtime plugin: it drives runc, or any
// OCI runtime binary with runc's command line (runsc), for the runtime
// classes mapped to it.
//
// Pods get pinned namespaces and, with a pod PID namespace, a small init of
// Berth's own instead of an infra container (internal/sandbox). Containers
// are created by the monitor running this plugin's create command (so the
// monitor is the parent of the container's init), then started, signalled,
// updated and deleted with the runtime binary (internal/ociruntime).
package runcplugin

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"

	"github.com/berth-cri/berth/internal/version"
	"github.com/berth-cri/berth/plugins/runc/internal/gvisor"
	"github.com/berth-cri/berth/plugins/runc/internal/sandbox"
	"github.com/berth-cri/berth/sdk"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

// Config is the plugin's [plugins.NAME.config] table.
type Config struct {
	// Binary is the OCI runtime used when a runtime class names none.
	Binary string `json:"binary"`
}

// Plugin implements sdk.RuntimePlugin.
type Plugin struct {
	runtimev1.UnimplementedRuntimeServer

	mu      sync.Mutex
	cfg     Config
	binary  string // resolved path, "" when missing
	version string
	lookErr error
	runDir  string
	// systemd: the host's cgroup driver is systemd, so cgroupsPath is
	// "slice:prefix:name" and the runtime must be told (--systemd-cgroup).
	systemd bool
}

// New returns an unconfigured plugin.
func New() *Plugin { return &Plugin{cfg: Config{Binary: "runc"}} }

var _ sdk.RuntimePlugin = (*Plugin)(nil)

// Info implements sdk.Base.
func (p *Plugin) Info() sdk.Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	attrs := map[string]string{"binary": p.cfg.Binary}
	if p.binary != "" {
		attrs["binary_path"] = p.binary
		attrs["binary_version"] = p.version
	}
	return sdk.Info{
		Name:          "runc",
		Kind:          sdk.KindRuntime,
		PluginVersion: version.Version,
		Capabilities:  []sdk.Capability{sdk.CapSandbox, sdk.CapContainers, sdk.CapExec, sdk.CapUpdate, sdk.CapStats, sdk.CapSandboxStats, sdk.CapSandboxUpdate, sdk.CapSandboxStatus, sdk.CapFeatures, sdk.CapHostNamespaces, sdk.CapPrivileged},
		Attributes:    attrs,
	}
}

// Configure implements sdk.Base.
func (p *Plugin) Configure(ctx context.Context, c sdk.Config) error {
	cfg := Config{Binary: "runc"}
	if err := sdk.DecodeConfig(c.Raw, &cfg); err != nil {
		return err
	}
	path, ver, err := probe(ctx, cfg.Binary)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg, p.binary, p.version, p.lookErr = cfg, path, ver, err
	p.runDir = c.RunDir
	p.systemd = c.CgroupDriver == "systemd"
	return nil
}

// Health implements sdk.Base: the runtime binary must exist and run.
func (p *Plugin) Health(context.Context) sdk.Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lookErr != nil {
		return sdk.Health{Reason: "RuntimeBinaryMissing", Message: p.lookErr.Error()}
	}
	return sdk.Healthy
}

// probe finds the runtime binary and asks its version.
func probe(ctx context.Context, binary string) (string, string, error) {
	path, err := exec.LookPath(binary)
	if err != nil {
		return "", "", fmt.Errorf("OCI runtime %q not found: %w", binary, err)
	}
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return "", "", fmt.Errorf("%s --version: %w", path, err)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return path, first, nil
}

// MaybeRunSubcommand runs the helper modes of the plugin binary (the pod
// init, and a gVisor container's create command and keeper); it returns
// false when the binary was started as the plugin. Call it first in main.
func MaybeRunSubcommand() bool { return sandbox.MaybeRunInit() || gvisor.MaybeRun() }
