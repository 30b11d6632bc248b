package cri

import (
	"context"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/host/state"
	monitorv1 "github.com/berth-cri/berth/sdk/proto/monitor/v1"
	runtimev1 "github.com/berth-cri/berth/sdk/proto/runtime/v1"
	storagev1 "github.com/berth-cri/berth/sdk/proto/storage/v1"
)

// Recover finishes what a host killed half-way left: containers and pods
// still recorded as being created are undone (their root filesystem,
// runtime state, supervision, namespaces, shm and directories removed) and
// their records and names released. Everything else is left as it is: the
// supervisors kept running and recorded any exit. Call it once the plugins
// are up, before serving.
func (s *Server) Recover(ctx context.Context) {
	cs, err := s.store.Containers("")
	if err != nil {
		s.log.Error("recover: list containers", "error", err)
		return
	}
	for _, c := range cs {
		if c.Phase != state.PhaseCreating {
			continue
		}
		s.log.Info("recover: undoing a container creation interrupted by a crash", "container", c.ID)
		// Supervision first: the monitor waits for a create still under
		// way (the supervisor goes on without the host) and stops the
		// supervisor; the runtime then deletes whatever it created.
		if mon, err := s.monitor(); err == nil {
			_, _ = mon.Forget(ctx, &monitorv1.ForgetRequest{ContainerId: c.ID})
		}
		if sb, err := s.store.Sandbox(c.SandboxID); err == nil {
			if rtc, opts, _, err := s.runtimeOf(sb); err == nil {
				_, _ = rtc.Delete(ctx, &runtimev1.DeleteRequest{ContainerId: c.ID, Options: opts, Force: true})
			}
		}
		if st, err := s.rootfs(); err == nil {
			if _, err := st.RemoveRootfs(ctx, &storagev1.RemoveRootfsRequest{ContainerId: c.ID}); err != nil {
				s.log.Warn("recover: remove rootfs", "container", c.ID, "error", err)
				continue
			}
		}
		_ = os.RemoveAll(filepath.Join(s.cfg.Host.RunRoot, "containers", c.ID))
		if err := s.store.DeleteContainer(c.ID); err != nil {
			s.log.Warn("recover: delete record", "container", c.ID, "error", err)
		}
	}
	sbs, err := s.store.Sandboxes()
	if err != nil {
		s.log.Error("recover: list sandboxes", "error", err)
		return
	}
	for _, sb := range sbs {
		if sb.Phase != state.PhaseCreating {
			continue
		}
		s.log.Info("recover: undoing a pod creation interrupted by a crash", "sandbox", sb.ID)
		if rtc, opts, _, err := s.runtimeOf(sb); err == nil {
			if _, err := rtc.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{SandboxId: sb.ID, Options: opts, Handle: sb.Handle}); err != nil {
				s.log.Warn("recover: remove sandbox", "sandbox", sb.ID, "error", err)
				continue
			}
		}
		_ = unix.Unmount(filepath.Join(sb.Dir, "shm"), unix.MNT_DETACH)
		_ = os.RemoveAll(sb.Dir)
		removeCgroup(sb.CgroupParent)
		if err := s.store.DeleteSandbox(sb.ID); err != nil {
			s.log.Warn("recover: delete record", "sandbox", sb.ID, "error", err)
		}
	}
}
