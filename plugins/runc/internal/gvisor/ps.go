package gvisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// KillTree SIGKILLs a process of container id and every descendant of it.
// PIDs are the sandbox's (its root PID namespace, which `runsc exec
// --internal-pid-file`, `runsc ps` and `runsc kill --pid` use), not the
// host's: a gVisor process has no host PID to signal.
func KillTree(ctx context.Context, r Runsc, id string, pid int) error {
	var out bytes.Buffer
	cmd := r.Command(ctx, "ps", id)
	cmd.Stdout = &out
	children := map[int][]int{}
	if err := cmd.Run(); err == nil {
		children = parsePS(out.String())
	}
	var order []int
	var walk func(int)
	walk = func(p int) {
		order = append(order, p)
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(pid)
	var errs []error
	// Parents first: a killed parent starts nothing new.
	for _, p := range order {
		if err := r.Command(ctx, "kill", "--pid", strconv.Itoa(p), id, strconv.Itoa(int(syscall.SIGKILL))).Run(); err != nil {
			errs = append(errs, fmt.Errorf("kill %d: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// parsePS maps parent PIDs to child PIDs from `runsc ps`'s table
// (UID PID PPID C TTY STIME TIME CMD).
func parsePS(table string) map[int][]int {
	children := map[int][]int{}
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) == 0 {
		return children
	}
	head := strings.Fields(lines[0])
	pidCol, ppidCol := -1, -1
	for i, h := range head {
		switch h {
		case "PID":
			pidCol = i
		case "PPID":
			ppidCol = i
		}
	}
	if pidCol < 0 || ppidCol < 0 {
		return children
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) <= max(pidCol, ppidCol) {
			continue
		}
		pid, err1 := strconv.Atoi(f[pidCol])
		ppid, err2 := strconv.Atoi(f[ppidCol])
		if err1 == nil && err2 == nil && pid != ppid {
			children[ppid] = append(children[ppid], pid)
		}
	}
	return children
}
