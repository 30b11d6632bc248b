// Package version holds Berth's build version, shared by the host and the
// first-party plugins. `make build` sets Version and Commit with -ldflags.
package version

// Set by -ldflags "-X github.com/berth-cri/berth/internal/version.Version=...".
var (
	Version = "0.1.0-dev"
	Commit  = "unknown"
)
