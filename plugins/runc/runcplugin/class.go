package runcplugin

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/plugins/runc/internal/ociruntime"
	"github.com/berth-cri/berth/sdk"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

// classConfig is a runtime class's config table for this plugin
// ([runtime_classes.HANDLER.config] in plugins.toml), decoded strictly.
type classConfig struct {
	// Binary is the OCI runtime ("" = the plugin's binary).
	Binary string `json:"binary"`
	// RuntimeArgs are global flags given to the runtime before every
	// command, for example ["--network=host"] for runsc. --root is
	// Berth's and cannot be set here.
	RuntimeArgs []string `json:"runtime_args"`
	// Sandbox is how a pod runs: "namespaces" (runc: every container joins
	// the pod's pinned namespaces) or "gvisor" (runsc: one gVisor sandbox
	// per pod, see internal/gvisor). "" is "gvisor" for a binary named
	// runsc and "namespaces" otherwise.
	Sandbox string `json:"sandbox"`
}

// Sandbox kinds.
const (
	sandboxNamespaces = "namespaces"
	sandboxGvisor     = "gvisor"
)

// runtimeClass is a resolved runtime class.
type runtimeClass struct {
	handler string
	rt      *ociruntime.Runtime
	gvisor  bool
}

// classFor resolves the runtime class of a request: its OCI runtime, the
// runtime's global flags and the kind of sandbox its pods get.
func (p *Plugin) classFor(opts *runtimev1.RuntimeOptions) (*runtimeClass, error) {
	p.mu.Lock()
	binary, runDir, systemd := p.cfg.Binary, p.runDir, p.systemd
	p.mu.Unlock()
	var cc classConfig
	if err := sdk.DecodeConfig(opts.GetConfigJson(), &cc); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "runtime class %q: %v", opts.GetHandler(), err)
	}
	if err := cc.validate(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "runtime class %q: plugin config: %v", opts.GetHandler(), err)
	}
	if cc.Binary != "" {
		binary = cc.Binary
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "runtime class %q: OCI runtime %q not found", opts.GetHandler(), binary)
	}
	kind := cc.Sandbox
	if kind == "" {
		kind = sandboxNamespaces
		if filepath.Base(path) == "runsc" {
			kind = sandboxGvisor
		}
	}
	rt := &ociruntime.Runtime{Binary: path, Root: filepath.Join(runDir, "state", filepath.Base(path)), SystemdCgroup: systemd, Args: cc.RuntimeArgs}
	return &runtimeClass{handler: opts.GetHandler(), rt: rt, gvisor: kind == sandboxGvisor}, nil
}

// runtimeFor resolves the OCI runtime a request's runtime class names.
func (p *Plugin) runtimeFor(opts *runtimev1.RuntimeOptions) (*ociruntime.Runtime, error) {
	c, err := p.classFor(opts)
	if err != nil {
		return nil, err
	}
	return c.rt, nil
}

func (c *classConfig) validate() error {
	switch c.Sandbox {
	case "", sandboxNamespaces, sandboxGvisor:
	default:
		return fmt.Errorf("sandbox: %q is not one of %q, %q", c.Sandbox, sandboxNamespaces, sandboxGvisor)
	}
	for i, a := range c.RuntimeArgs {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case !strings.HasPrefix(a, "-") || name == "":
			return fmt.Errorf("runtime_args[%d]: %q is not a flag (flags start with '-'; give a value as --flag=value)", i, a)
		case name == "root" || name == "systemd-cgroup":
			return fmt.Errorf("runtime_args[%d]: %q is set by Berth", i, a)
		}
	}
	return nil
}
