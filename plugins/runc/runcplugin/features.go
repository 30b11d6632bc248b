package runcplugin

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"sync"
	"time"

	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

// runtimeFeatures is what `RUNTIME features` (OCI runtime features, runc
// 1.1 and later) says, per binary, read once.
var runtimeFeatures = struct {
	sync.Mutex
	m map[string]*runtimev1.FeaturesResponse
}{m: map[string]*runtimev1.FeaturesResponse{}}

func binaryFeatures(ctx context.Context, binary string) *runtimev1.FeaturesResponse {
	runtimeFeatures.Lock()
	defer runtimeFeatures.Unlock()
	if f, ok := runtimeFeatures.m[binary]; ok {
		return f
	}
	f := &runtimev1.FeaturesResponse{}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// A runtime without the command (or whose output does not parse) has
	// none of the features; one that did not answer in time is asked again
	// next time.
	out, err := exec.CommandContext(ctx, binary, "features").Output()
	if ctx.Err() != nil {
		return f
	}
	if err == nil {
		var feat struct {
			MountOptions []string `json:"mountOptions"`
			Linux        struct {
				Namespaces []string `json:"namespaces"`
			} `json:"linux"`
		}
		if json.Unmarshal(out, &feat) == nil {
			f.RecursiveReadOnlyMounts = slices.Contains(feat.MountOptions, "rro")
		}
	}
	runtimeFeatures.m[binary] = f
	return f
}

// Features implements runtimev1.RuntimeServer: what the class's OCI
// runtime can do. gVisor pods have none of these features here.
func (p *Plugin) Features(ctx context.Context, r *runtimev1.FeaturesRequest) (*runtimev1.FeaturesResponse, error) {
	c, err := p.classFor(r.GetOptions())
	if err != nil {
		return nil, err
	}
	if c.gvisor {
		return &runtimev1.FeaturesResponse{}, nil
	}
	return binaryFeatures(ctx, c.rt.Binary), nil
}
