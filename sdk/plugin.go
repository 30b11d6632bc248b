package sdk

import (
	"context"
	"fmt"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pluginv1 "github.com/berth-cri/berth/sdk/proto/plugin/v1"
)

// Kind is the kind of a plugin, which decides the gRPC service it serves.
type Kind string

// The plugin kinds.
const (
	KindRuntime Kind = "runtime"
	KindStorage Kind = "storage"
	KindNetwork Kind = "network"
	KindMonitor Kind = "monitor"
)

// Kinds lists every kind.
var Kinds = []Kind{KindRuntime, KindStorage, KindNetwork, KindMonitor}

// Proto returns the kind's enum value in berth.plugin.v1.
func (k Kind) Proto() pluginv1.Kind {
	switch k {
	case KindRuntime:
		return pluginv1.Kind_KIND_RUNTIME
	case KindStorage:
		return pluginv1.Kind_KIND_STORAGE
	case KindNetwork:
		return pluginv1.Kind_KIND_NETWORK
	case KindMonitor:
		return pluginv1.Kind_KIND_MONITOR
	}
	return pluginv1.Kind_KIND_UNSPECIFIED
}

// KindFromProto is the inverse of Kind.Proto; it returns "" for an unknown value.
func KindFromProto(k pluginv1.Kind) Kind {
	for _, x := range Kinds {
		if x.Proto() == k {
			return x
		}
	}
	return ""
}

// ParseKind validates a kind name.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown plugin kind %q (want one of runtime, storage, network, monitor)", s)
}

// grpcPlugin is the go-plugin glue for every kind: the plugin side registers
// the Plugin service plus its kind's service; the host side gets the raw
// *grpc.ClientConn and builds typed clients on it.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	register func(*grpc.Server)
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.register == nil {
		return fmt.Errorf("berth sdk: this plugin set is for the host side only")
	}
	p.register(s)
	return nil
}

func (p *grpcPlugin) GRPCClient(done context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &PluginConn{ClientConn: c, Done: done.Done()}, nil
}

// PluginConn is what a host dispenses from a plugin client: the gRPC
// connection to build typed clients on, and a channel closed when the
// plugin process exits.
type PluginConn struct {
	*grpc.ClientConn
	Done <-chan struct{}
}

var _ plugin.GRPCPlugin = (*grpcPlugin)(nil)

// HostPluginSets returns the go-plugin plugin sets a host offers for a plugin
// of the given kind, one per protocol version. Dispensing kind from a client
// built with them yields a *PluginConn.
func HostPluginSets(kind Kind, versions []int) map[int]plugin.PluginSet {
	sets := make(map[int]plugin.PluginSet, len(versions))
	for _, v := range versions {
		sets[v] = plugin.PluginSet{string(kind): &grpcPlugin{}}
	}
	return sets
}
