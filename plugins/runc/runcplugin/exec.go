package runcplugin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

// Exec runs a process in a running container with `runtime exec`, streams
// its output, and on timeout kills it and everything it started, so no
// process (or zombie) is left in the container.
func (p *Plugin) Exec(stream grpc.BidiStreamingServer[runtimev1.ExecInput, runtimev1.ExecOutput]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first message must be an ExecStart")
	}
	if start.GetTty() {
		return status.Error(codes.Unimplemented, "exec with a terminal is not supported yet")
	}
	c, err := p.classFor(start.GetOptions())
	if err != nil {
		return err
	}
	rt := c.rt
	p.mu.Lock()
	dir := filepath.Join(p.runDir, "exec")
	p.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return status.Errorf(codes.Internal, "exec dir: %v", err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	base := filepath.Join(dir, hex.EncodeToString(b))
	procFile, pidFile, internalPIDFile := base+".json", base+".pid", base+".ipid"
	defer os.Remove(procFile)
	defer os.Remove(pidFile)
	defer os.Remove(internalPIDFile)
	if err := os.WriteFile(procFile, start.GetProcessJson(), 0o600); err != nil {
		return status.Errorf(codes.Internal, "exec process: %v", err)
	}
	args := append(rt.Global(), "exec", "--process", procFile, "--pid-file", pidFile)
	if c.gvisor {
		// runsc writes its own PID to --pid-file; the process's is the
		// sandbox's, in --internal-pid-file.
		args = append(args, "--internal-pid-file", internalPIDFile)
	}
	cmd := exec.Command(rt.Binary, append(args, start.GetContainerId())...)
	kill := func() { killExec(pidFile, cmd) }
	if c.gvisor {
		kill = func() { gvisorKillExec(c, start.GetContainerId(), internalPIDFile, cmd) }
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return status.Errorf(codes.Internal, "%v", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return status.Errorf(codes.Internal, "%v", err)
	}
	var stdin io.WriteCloser
	if start.GetStdin() {
		if stdin, err = cmd.StdinPipe(); err != nil {
			return status.Errorf(codes.Internal, "%v", err)
		}
	}
	if err := cmd.Start(); err != nil {
		return status.Errorf(codes.Internal, "start exec: %v", err)
	}
	var sendMu sync.Mutex
	send := func(o *runtimev1.ExecOutput) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(o)
	}
	var wg sync.WaitGroup
	for _, src := range []struct {
		r      io.Reader
		stderr bool
	}{{stdout, false}, {stderr, true}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32*1024)
			for {
				n, err := src.r.Read(buf)
				if n > 0 {
					chunk := append([]byte(nil), buf[:n]...)
					o := &runtimev1.ExecOutput{Output: &runtimev1.ExecOutput_Stdout{Stdout: chunk}}
					if src.stderr {
						o = &runtimev1.ExecOutput{Output: &runtimev1.ExecOutput_Stderr{Stderr: chunk}}
					}
					_ = send(o)
				}
				if err != nil {
					return
				}
			}
		}()
	}
	if stdin != nil {
		go func() {
			defer stdin.Close()
			for {
				in, err := stream.Recv()
				if err != nil {
					return
				}
				if in.GetCloseStdin() {
					return
				}
				if d := in.GetStdin(); len(d) > 0 {
					if _, err := stdin.Write(d); err != nil {
						return
					}
				}
			}
		}()
	}
	done := make(chan error, 1)
	go func() {
		wg.Wait()
		done <- cmd.Wait()
	}()
	var timeout <-chan time.Time
	if t := time.Duration(start.GetTimeoutNanos()); t > 0 {
		timer := time.NewTimer(t)
		defer timer.Stop()
		timeout = timer.C
	}
	timedOut := false
	var waitErr error
	select {
	case waitErr = <-done:
	case <-stream.Context().Done():
		kill()
		waitErr = <-done
	case <-timeout:
		timedOut = true
		kill()
		waitErr = <-done
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	} else if waitErr != nil {
		return status.Errorf(codes.Internal, "exec: %v", waitErr)
	}
	return send(&runtimev1.ExecOutput{Output: &runtimev1.ExecOutput_Exit{Exit: &runtimev1.ExecExit{ExitCode: int32(code), TimedOut: timedOut}}})
}

// killExec kills the exec'd process and all its descendants (the runtime
// exec command then reaps it and returns), then the runtime command itself
// if it lingers.
func killExec(pidFile string, cmd *exec.Cmd) {
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			killTree(pid)
		}
	}
	go func() {
		time.Sleep(5 * time.Second)
		if cmd.ProcessState == nil && cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
}

// killTree SIGKILLs pid and every descendant.
func killTree(pid int) {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
	}
	var walk func(int)
	walk = func(p int) {
		_ = syscall.Kill(p, syscall.SIGSTOP)
		for _, c := range children[p] {
			walk(c)
		}
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	walk(pid)
}
