package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	plugin "github.com/hashicorp/go-plugin"

	"github.com/berth-cri/berth/host/logging"
	"github.com/berth-cri/berth/sdk"
)

// reattachRecord is what a host needs to find a plugin process again after
// it crashed: go-plugin's ReattachConfig does not carry the negotiated
// version, and the PID alone could have been reused, so the record also
// holds the binary and the process's start time.
type reattachRecord struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"` // /proc/PID/stat field 22
	Socket    string `json:"socket"`
	Protocol  int    `json:"protocol"`
	Path      string `json:"path"`
}

func (i *Instance) reattachFile() string {
	return filepath.Join(i.m.stateDir, i.spec.Name+".reattach.json")
}

func (i *Instance) saveReattach(rc *plugin.ReattachConfig, version int) error {
	if rc.Addr == nil || rc.Addr.Network() != "unix" {
		return fmt.Errorf("plugin address %v is not a unix socket", rc.Addr)
	}
	st, err := procStartTime(rc.Pid)
	if err != nil {
		return err
	}
	b, err := json.Marshal(reattachRecord{PID: rc.Pid, StartTime: st, Socket: rc.Addr.String(), Protocol: version, Path: i.path})
	if err != nil {
		return err
	}
	return writeFileAtomic(i.reattachFile(), b)
}

func (i *Instance) loadReattach() (*reattachRecord, error) {
	b, err := os.ReadFile(i.reattachFile())
	if err != nil {
		return nil, err
	}
	var rec reattachRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decode %s: %w", i.reattachFile(), err)
	}
	return &rec, nil
}

func (i *Instance) removeReattach() { _ = os.Remove(i.reattachFile()) }

// sameProcess reports whether rec still describes a live process running
// this plugin's binary.
func (i *Instance) sameProcess(rec *reattachRecord) error {
	if rec.Path != i.path {
		return fmt.Errorf("plugin path changed from %s to %s", rec.Path, i.path)
	}
	st, err := procStartTime(rec.PID)
	if err != nil {
		return err
	}
	if st != rec.StartTime {
		return fmt.Errorf("pid %d now belongs to another process", rec.PID)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", rec.PID))
	if err != nil {
		return fmt.Errorf("read exe of pid %d: %w", rec.PID, err)
	}
	if strings.TrimSuffix(exe, " (deleted)") != rec.Path {
		return fmt.Errorf("pid %d runs %s, not %s", rec.PID, exe, rec.Path)
	}
	return nil
}

// reattach adopts a plugin process a previous host left running.
func (i *Instance) reattach(ctx context.Context, rec *reattachRecord) error {
	if err := i.sameProcess(rec); err != nil {
		return err
	}
	if i.spec.SHA256 != "" {
		// SecureConfig cannot be combined with Reattach; check the running
		// binary ourselves.
		actual, err := fileSHA256(fmt.Sprintf("/proc/%d/exe", rec.PID))
		if err != nil {
			return err
		}
		if actual != i.spec.SHA256 {
			return fmt.Errorf("running plugin binary has SHA-256 %s but plugins.toml expects %s", actual, i.spec.SHA256)
		}
	}
	ok := false
	for _, v := range i.m.cfg.ProtocolVersions(i.spec) {
		ok = ok || v == rec.Protocol
	}
	if !ok {
		return fmt.Errorf("running plugin speaks protocol %d, which is not offered now", rec.Protocol)
	}
	addr, err := net.ResolveUnixAddr("unix", rec.Socket)
	if err != nil {
		return err
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: sdk.Handshake,
		// On reattach the plugin set is not negotiated: use the recorded version's.
		Plugins:          sdk.HostPluginSets(i.kind, []int{rec.Protocol})[rec.Protocol],
		Reattach:         &plugin.ReattachConfig{Protocol: plugin.ProtocolGRPC, ProtocolVersion: rec.Protocol, Addr: addr, Pid: rec.PID},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logging.HCLog(i.log),
	})
	rpc, err := client.Client()
	if err != nil {
		return fmt.Errorf("reattach: %w", err)
	}
	if err := i.adopt(ctx, client, rpc, rec.Protocol); err != nil {
		// Leave the process for killStale; Kill here would ask it politely
		// and then signal whatever PID it was given.
		rpc.Close()
		return err
	}
	return nil
}

// killStale kills a process a previous host left, if it is still ours.
func (i *Instance) killStale(rec *reattachRecord) {
	defer i.removeReattach()
	if err := i.sameProcess(rec); err != nil {
		return
	}
	if err := syscall.Kill(rec.PID, syscall.SIGKILL); err == nil {
		i.log.Info("killed stale plugin process", "pid", rec.PID)
	}
	_ = os.Remove(rec.Socket)
}

// procStartTime reads a process's start time (clock ticks since boot).
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, err)
	}
	// The command name (field 2) may contain spaces and parentheses; fields
	// after the last ')' are plain.
	s := string(b)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	fields := strings.Fields(s[end+1:])
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return 0, errors.New("short /proc stat")
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// writeFileAtomic writes via a temporary file and rename, so a crash leaves
// the old or the new content, never a torn file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
