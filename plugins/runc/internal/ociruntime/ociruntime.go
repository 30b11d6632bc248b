// Package ociruntime drives an OCI runtime binary with runc's command line
// (runc, runsc): create commands, start, kill, delete, state, update.
package ociruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Runtime is one OCI runtime binary with its state directory.
type Runtime struct {
	Binary string // absolute path
	Root   string // --root: the runtime's state directory
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
	return []string{r.Binary, "--root", r.Root, "create", "--bundle", bundle, "--pid-file", pidFile, id}
}

// callTimeout bounds every runtime command: a hung runtime must not hang
// the CRI call (StopContainer, StopPodSandbox return within their budget).
const callTimeout = 30 * time.Second

func (r *Runtime) run(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	all := append([]string{"--root", r.Root}, args...)
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
	cmd := exec.CommandContext(ctx, r.Binary, "--root", r.Root, "update", "--resources", "-", id)
	cmd.Stdin = bytes.NewReader(resourcesJSON)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s update: %w: %s", filepath.Base(r.Binary), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Stats is the part of `runtime events --stats` Berth reports.
type Stats struct {
	CPUTotalNanos    uint64
	MemoryUsage      uint64
	MemoryWorkingSet uint64
	MemoryRSS        uint64
	PageFaults       uint64
	MajorPageFaults  uint64
	Pids             uint64
}

// Stats reads the container's cgroup statistics.
func (r *Runtime) Stats(ctx context.Context, id string) (*Stats, error) {
	out, err := r.run(ctx, "events", "--stats", id)
	if err != nil {
		return nil, err
	}
	var ev struct {
		Data struct {
			CPU struct {
				Usage struct {
					Total uint64 `json:"total"`
				} `json:"usage"`
			} `json:"cpu"`
			Memory struct {
				Usage struct {
					Usage uint64 `json:"usage"`
				} `json:"usage"`
				Stats map[string]uint64 `json:"stats"`
			} `json:"memory"`
			Pids struct {
				Current uint64 `json:"current"`
			} `json:"pids"`
		} `json:"data"`
	}
	if err := json.Unmarshal(out, &ev); err != nil {
		return nil, fmt.Errorf("decode stats of %s: %w", id, err)
	}
	m := ev.Data.Memory
	inactive := m.Stats["total_inactive_file"] // cgroup v1
	if v, ok := m.Stats["inactive_file"]; ok && inactive == 0 {
		inactive = v // cgroup v2
	}
	ws := m.Usage.Usage
	if inactive < ws {
		ws -= inactive
	} else {
		ws = 0
	}
	rss := m.Stats["total_rss"]
	if rss == 0 {
		rss = m.Stats["anon"]
	}
	pf, mpf := m.Stats["total_pgfault"], m.Stats["total_pgmajfault"]
	if pf == 0 {
		pf, mpf = m.Stats["pgfault"], m.Stats["pgmajfault"]
	}
	return &Stats{CPUTotalNanos: ev.Data.CPU.Usage.Total, MemoryUsage: m.Usage.Usage, MemoryWorkingSet: ws, MemoryRSS: rss,
		PageFaults: pf, MajorPageFaults: mpf, Pids: ev.Data.Pids.Current}, nil
}
