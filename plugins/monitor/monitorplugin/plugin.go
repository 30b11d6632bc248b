// Package monitorplugin is Berth's container supervisor (what conmon is to
// CRI-O): it owns container stdio, writes CRI logs, records exits and
// detects OOM kills, and outlives the host.
//
// Status: the plugin starts, configures its state directory and reports
// health. Supervision RPCs come with the pod lifecycle work and answer
// codes.Unimplemented until then; Info lists no capability.
package monitorplugin

import (
	"context"
	"os"
	"sync"

	"github.com/berth-cri/berth/internal/version"
	"github.com/berth-cri/berth/sdk"
	monitorv1 "github.com/berth-cri/berth/sdk/proto/monitor/v1"
)

// Config is the plugin's [plugins.NAME.config] table (no settings yet).
type Config struct{}

// Plugin implements sdk.MonitorPlugin.
type Plugin struct {
	monitorv1.UnimplementedMonitorServer

	mu     sync.Mutex
	health sdk.Health
}

// New returns an unconfigured plugin.
func New() *Plugin {
	return &Plugin{health: sdk.Health{Reason: "NotConfigured", Message: "the host has not configured the plugin yet"}}
}

var _ sdk.MonitorPlugin = (*Plugin)(nil)

// Info implements sdk.Base.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{
		Name:          "monitor",
		Kind:          sdk.KindMonitor,
		PluginVersion: version.Version,
		Capabilities:  []sdk.Capability{},
	}
}

// Configure implements sdk.Base.
func (p *Plugin) Configure(_ context.Context, c sdk.Config) error {
	var cfg Config
	if err := sdk.DecodeConfig(c.Raw, &cfg); err != nil {
		return err
	}
	health := sdk.Healthy
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		health = sdk.Health{Reason: "StateDirUnavailable", Message: err.Error()}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.health = health
	return nil
}

// Health implements sdk.Base.
func (p *Plugin) Health(context.Context) sdk.Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}
