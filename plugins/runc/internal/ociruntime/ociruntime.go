// Package ociruntime drives an OCI runtime binary with runc's command line
// (runc, runsc): create commands, start, kill, delete, state, update.
package ociruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berth-cri/berth/plugins/runc/internal/cgroups"
)

// Runtime is one OCI runtime binary with its state directory.
type Runtime struct {
	Binary string // absolute path
	Root   string // --root: the runtime's state directory
	// SystemdCgroup makes the runtime manage cgroups through systemd
	// (--systemd-cgroup; cgroupsPath is then "slice:prefix:name").
	SystemdCgroup bool
	// Args are more global flags, from the runtime class's runtime_args
	// (for example runsc's --network=host).
	Args []string
}

// Global is the runtime's global flags, before the command.
func (r *Runtime) Global() []string {
	g := []string{"--root", r.Root}
	if r.SystemdCgroup {
		g = append(g, "--systemd-cgroup")
	}
	return append(g, r.Args...)
}

// ErrNotExist means the runtime knows no such container.
var ErrNotExist = errors.New("container does not exist")

// State is `runtime state`'s answer.
type State struct {
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Annotations map[string]string `json:"annotations"`
}

// CreateArgv is the command that creates a container from bundle, writing
// its init's PID to pidFile, with the caller's stdio as the container's.
func (r *Runtime) CreateArgv(id, bundle, pidFile string) []string {
	return append(append([]string{r.Binary}, r.Global()...), "create", "--bundle", bundle, "--pid-file", pidFile, id)
}

// callTimeout bounds every runtime command: a hung runtime must not hang
// the CRI call (StopContainer, StopPodSandbox return within their budget).
const callTimeout = 30 * time.Second

func (r *Runtime) run(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	all := append(r.Global(), args...)
	cmd := exec.CommandContext(ctx, r.Binary, all...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// Kill the whole process group on timeout (runsc forks helpers).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "does not exist") || strings.Contains(msg, "not found") {
			return nil, fmt.Errorf("%s %s: %w", filepath.Base(r.Binary), args[0], ErrNotExist)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: timed out after %v", filepath.Base(r.Binary), args[0], callTimeout)
		}
		return nil, fmt.Errorf("%s %s: %w: %s", filepath.Base(r.Binary), strings.Join(args, " "), err, msg)
	}
	return out, nil
}

// Start starts a created container.
func (r *Runtime) Start(ctx context.Context, id string) error {
	_, err := r.run(ctx, "start", id)
	return err
}

// Kill sends a signal to the container's init (all processes with all).
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := r.run(ctx, append(args, id, fmt.Sprint(int(sig)))...)
	return err
}

// Delete removes the container; a missing one is not an error.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	// runc and crun keep a container's state in ROOT/ID: without it there
	// is nothing to delete, and no need to run the runtime to hear so.
	if b := filepath.Base(r.Binary); b == "runc" || b == "crun" {
		if _, err := os.Lstat(filepath.Join(r.Root, id)); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
	}
	_, err := r.run(ctx, "delete", "--force", id)
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	return err
}

// State asks the runtime for the container's state.
func (r *Runtime) State(ctx context.Context, id string) (*State, error) {
	out, err := r.run(ctx, "state", id)
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("decode state of %s: %w", id, err)
	}
	return &st, nil
}

// Update applies new Linux resources (an OCI LinuxResources JSON).
func (r *Runtime) Update(ctx context.Context, id string, resourcesJSON []byte) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.Binary, append(r.Global(), "update", "--resources", "-", id)...)
	cmd.Stdin = bytes.NewReader(resourcesJSON)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s update: %w: %s", filepath.Base(r.Binary), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Stats is the part of `runtime events --stats` Berth reports: the same
// counters the pod's cgroup parent is read for.
type Stats = cgroups.Stats

// statsEvent is runc's `events --stats` output (libcontainer/types).
type statsEvent struct {
	Data struct {
		CPU struct {
			Usage struct {
				Total  uint64 `json:"total"`
				Kernel uint64 `json:"kernel"`
				User   uint64 `json:"user"`
			} `json:"usage"`
			Throttling struct {
				Periods          uint64 `json:"periods"`
				ThrottledPeriods uint64 `json:"throttledPeriods"`
				ThrottledTime    uint64 `json:"throttledTime"`
			} `json:"throttling"`
		} `json:"cpu"`
		Memory struct {
			Cache uint64            `json:"cache"`
			Usage memoryEntry       `json:"usage"`
			Swap  memoryEntry       `json:"swap"`
			Raw   map[string]uint64 `json:"raw"`
		} `json:"memory"`
		Pids struct {
			Current uint64 `json:"current"`
			Limit   uint64 `json:"limit"`
		} `json:"pids"`
	} `json:"data"`
}

type memoryEntry struct {
	Limit   uint64 `json:"limit"`
	Usage   uint64 `json:"usage"`
	Max     uint64 `json:"max"`
	Failcnt uint64 `json:"failcnt"`
}

// noLimit is what cgroup v1 reports as an unlimited memory limit (rounded to
// the page size) and v2's "max" as runc decodes it.
const noLimit = uint64(1) << 62

// Stats reads the container's cgroup statistics.
func (r *Runtime) Stats(ctx context.Context, id string) (*Stats, error) {
	out, err := r.run(ctx, "events", "--stats", id)
	if err != nil {
		return nil, err
	}
	return parseStats(id, out)
}

func parseStats(id string, out []byte) (*Stats, error) {
	var ev statsEvent
	if err := json.Unmarshal(out, &ev); err != nil {
		return nil, fmt.Errorf("decode stats of %s: %w", id, err)
	}
	m, c := ev.Data.Memory, ev.Data.CPU
	// cgroup v1 names the hierarchical counters total_*, v2 has no prefix.
	raw := func(name string) uint64 {
		if v, ok := m.Raw["total_"+name]; ok {
			return v
		}
		return m.Raw[name]
	}
	ws := m.Usage.Usage
	if inactive := raw("inactive_file"); inactive < ws {
		ws -= inactive
	} else {
		ws = 0
	}
	rss := raw("rss")
	if _, ok := m.Raw["anon"]; ok {
		rss = m.Raw["anon"]
	}
	mapped := raw("mapped_file")
	if v, ok := m.Raw["file_mapped"]; ok {
		mapped = v
	}
	st := &Stats{CPUTotalNanos: c.Usage.Total, CPUUserNanos: c.Usage.User, CPUSystemNanos: c.Usage.Kernel,
		CPUPeriods: c.Throttling.Periods, CPUThrottledPeriods: c.Throttling.ThrottledPeriods, CPUThrottledNanos: c.Throttling.ThrottledTime,
		MemoryUsage: m.Usage.Usage, MemoryWorkingSet: ws, MemoryRSS: rss, MemoryCache: m.Cache, MemoryMappedFile: mapped,
		MemoryMaxUsage: m.Usage.Max, MemoryFailcnt: m.Usage.Failcnt,
		PageFaults: raw("pgfault"), MajorPageFaults: raw("pgmajfault"), Pids: ev.Data.Pids.Current, PidsLimit: ev.Data.Pids.Limit}
	if m.Usage.Limit < noLimit {
		st.MemoryLimit = m.Usage.Limit
	}
	// v1 reports memory+swap as "swap"; v2 reports swap alone.
	if _, v2 := m.Raw["anon"]; v2 {
		st.MemorySwap = m.Swap.Usage
	} else if m.Swap.Usage > m.Usage.Usage {
		st.MemorySwap = m.Swap.Usage - m.Usage.Usage
	}
	return st, nil
}
