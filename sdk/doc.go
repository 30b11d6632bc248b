// Package sdk is Berth's public plugin API: what a vendor imports to build a
// plugin that the Berth host runs out of process, and what the host uses to
// talk to it.
//
// A plugin is an executable speaking hashicorp/go-plugin's gRPC protocol. It
// serves two gRPC services on one connection: berth.plugin.v1.Plugin (identity,
// configuration, health; the same for every kind) and the service of its kind
// (berth.runtime.v1.Runtime, berth.storage.v1.Storage, berth.network.v1.Network
// or berth.monitor.v1.Monitor). A plugin's main is one call:
//
//	func main() { sdk.ServeRuntime(myruntime.New()) }
//
// # Versioning
//
// The go-plugin protocol version is the wire major: version 1 is the set of
// berth.*.v1 proto packages. A host offers the majors it speaks (the current
// one and the one before it, once there is one) and go-plugin picks the
// highest both sides speak. Within a major the wire only grows; optional
// features are announced in InfoResponse.capabilities, and a host treats
// codes.Unimplemented from an RPC it did not find a capability for as absent.
//
// # Byte streams
//
// Container stdio (exec, attach), log following and events cross the plugin
// boundary as ordinary gRPC streams on the plugin's connection (see
// Runtime.Exec, Monitor.Attach, Monitor.Events). go-plugin's GRPCBroker was
// measured and gives no throughput advantage while costing one more socket per
// stream, and broker connections do not survive a reattach; plain streams do
// not need it.
//
// # Transport and lifetime
//
// The host starts plugins with their socket in a root-only (0700) directory
// and without AutoMTLS, because AutoMTLS cannot be combined with reattaching a
// plugin after the host restarts. Serve ignores SIGPIPE so that a plugin keeps
// running (and can be reattached) when the host dies while the plugin logs.
package sdk
