package sdk

// Capability names a feature a plugin implements. A plugin lists only what it
// really does; the host refuses requests needing an unlisted capability with
// codes.Unimplemented (or FailedPrecondition) before calling the plugin.
type Capability = string

// Runtime plugin capabilities.
const (
	CapSandbox        Capability = "sandbox"         // CreateSandbox/StopSandbox/RemoveSandbox
	CapContainers     Capability = "containers"      // Create/Start/Kill/Delete/State
	CapExec           Capability = "exec"            // Exec
	CapTTY            Capability = "tty"             // terminals for exec and containers
	CapAttach         Capability = "attach"          // attaching to container stdio
	CapUpdate         Capability = "update"          // Update
	CapStats          Capability = "stats"           // Stats
	CapSandboxStats   Capability = "sandbox-stats"   // SandboxStats
	CapSandboxUpdate  Capability = "sandbox-update"  // UpdateSandbox
	CapSandboxStatus  Capability = "sandbox-status"  // SandboxStatus
	CapFeatures       Capability = "features"        // Features
	CapHostNamespaces Capability = "host-namespaces" // host network/pid/ipc
	CapPrivileged     Capability = "privileged"      // privileged containers
	CapUserNamespaces Capability = "user-namespaces"
)

// Storage plugin capabilities.
const (
	CapImages Capability = "images" // Pull/List/Status/Remove/FsInfo
	CapRootfs Capability = "rootfs" // Create/Mount/Unmount/Remove/Usage
)

// Network plugin capabilities.
const (
	CapPodNetwork   Capability = "pod-network" // SetUpPod/TearDownPod/PodNetworkStatus
	CapPortMappings Capability = "port-mappings"
)

// Monitor plugin capabilities.
const (
	CapWatch    Capability = "watch" // Watch/Status/Forget/Events
	CapLogs     Capability = "logs"  // CRI log files, ReopenLog
	CapOOM      Capability = "oom"   // OOM kill detection
	CapAttachIO Capability = "attach-io"
	CapReattach Capability = "reattach" // survives host restarts
)

// HasCapability reports whether caps lists c.
func HasCapability(caps []string, c Capability) bool {
	for _, x := range caps {
		if x == c {
			return true
		}
	}
	return false
}
