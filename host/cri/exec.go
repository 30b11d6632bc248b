package cri

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/host/state"
	"github.com/berth-cri/berth/sdk"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
)

// maxExecOutput bounds what ExecSync keeps of each stream (as CRI-O does);
// more is discarded and the output marked truncated.
const maxExecOutput = 16 << 20

// execProcess is the container's own process (user, environment, working
// directory, capabilities, no_new_privs) with other arguments.
func execProcess(c *state.Container, cmd []string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(c.Bundle, "config.json"))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read spec of %s: %v", c.ID, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil || spec.Process == nil {
		return nil, status.Errorf(codes.Internal, "decode spec of %s: %v", c.ID, err)
	}
	p := *spec.Process
	p.Args = cmd
	p.Terminal = false
	p.ConsoleSize = nil
	return json.Marshal(p)
}

// ExecSync runs a command in a container and returns its output and exit
// code. On timeout the command and everything it started are killed and
// reaped, and the call fails with DeadlineExceeded.
func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, invalid("cmd", "must not be empty")
	}
	if req.GetTimeout() < 0 {
		return nil, invalid("timeout", "%d is negative", req.GetTimeout())
	}
	c, _, err := s.container(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.Phase != state.PhaseRunning {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is not running", c.ID)
	}
	rtc, opts, rt, err := s.containerRuntime(c)
	if err != nil {
		return nil, err
	}
	if err := rt.Require(sdk.CapExec); err != nil {
		return nil, err
	}
	proc, err := execProcess(c, req.GetCmd())
	if err != nil {
		return nil, err
	}
	// The plugin enforces the timeout; the stream outlives it by a grace so
	// the plugin can report the kill.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := rtc.Exec(sctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&runtimev1.ExecInput{Input: &runtimev1.ExecInput_Start{Start: &runtimev1.ExecStart{
		ContainerId: c.ID, Options: opts, ProcessJson: proc, TimeoutNanos: int64(time.Duration(req.GetTimeout()) * time.Second),
	}}}); err != nil {
		return nil, err
	}
	_ = stream.CloseSend()
	var stdout, stderr []byte
	appendCapped := func(dst, b []byte) []byte {
		if room := maxExecOutput - len(dst); room > 0 {
			if len(b) > room {
				b = b[:room]
			}
			dst = append(dst, b...)
		}
		return dst
	}
	for {
		out, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, status.Errorf(codes.Internal, "exec in %s: the runtime ended the stream without an exit status", c.ID)
		}
		if err != nil {
			return nil, err
		}
		switch o := out.GetOutput().(type) {
		case *runtimev1.ExecOutput_Stdout:
			stdout = appendCapped(stdout, o.Stdout)
		case *runtimev1.ExecOutput_Stderr:
			stderr = appendCapped(stderr, o.Stderr)
		case *runtimev1.ExecOutput_Exit:
			if o.Exit.GetTimedOut() {
				return nil, status.Errorf(codes.DeadlineExceeded, "command %q in container %s timed out after %ds", strings.Join(req.GetCmd(), " "), c.ID, req.GetTimeout())
			}
			return &runtimeapi.ExecSyncResponse{Stdout: stdout, Stderr: stderr, ExitCode: o.Exit.GetExitCode()}, nil
		}
	}
}
