package ocispec

import (
	"fmt"
	"sort"
	"strings"
)

// DefaultCapabilities is the capability set of an unprivileged container,
// CRI-O's default.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_KILL",
}

// AllCapabilities are the capabilities Linux knows (up to 6.x).
var AllCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// normaliseCap turns "net_admin", "NET_ADMIN" or "CAP_NET_ADMIN" into
// "CAP_NET_ADMIN" and checks it exists.
func normaliseCap(c string) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(c))
	if !strings.HasPrefix(u, "CAP_") {
		u = "CAP_" + u
	}
	for _, k := range AllCapabilities {
		if k == u {
			return u, nil
		}
	}
	return "", fmt.Errorf("unknown capability %q", c)
}

// capabilitySet computes a container's capabilities: the default set (all
// the host grants, for a privileged container), then drops, then adds, as
// CRI-O does ("ALL" in either list means every capability). Only
// capabilities in allowed (what the daemon itself holds) can be granted.
func capabilitySet(privileged bool, add, drop []string, allowed []string) ([]string, error) {
	allowedSet := map[string]bool{}
	for _, c := range allowed {
		allowedSet[c] = true
	}
	set := map[string]bool{}
	if privileged {
		for _, c := range allowed {
			set[c] = true
		}
		return sortedCaps(set), nil
	}
	for _, c := range DefaultCapabilities {
		set[c] = true
	}
	for _, c := range drop {
		if strings.EqualFold(c, "ALL") {
			set = map[string]bool{}
			continue
		}
		n, err := normaliseCap(c)
		if err != nil {
			return nil, err
		}
		delete(set, n)
	}
	for _, c := range add {
		if strings.EqualFold(c, "ALL") {
			for _, k := range allowed {
				set[k] = true
			}
			continue
		}
		n, err := normaliseCap(c)
		if err != nil {
			return nil, err
		}
		set[n] = true
	}
	// A capability the daemon lacks cannot be granted; runc would fail
	// with EPERM. Keep what the host allows.
	for c := range set {
		if !allowedSet[c] {
			delete(set, c)
		}
	}
	return sortedCaps(set), nil
}

func sortedCaps(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}
