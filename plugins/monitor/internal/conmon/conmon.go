// Package conmon is the per-container supervisor of the monitor plugin, what
// conmon is to CRI-O: one small process per container, detached from every
// plugin and from the host, which
//
//   - runs the runtime's create command as the container's parent (it is a
//     child subreaper, so the container's init becomes its child),
//   - owns the container's stdout and stderr and writes them to the CRI log
//     (`<RFC3339Nano> <stdout|stderr> <P|F> <line>`, long lines split and
//     marked P), reopening the file on SIGUSR1,
//   - records the exit code, the exit time and whether the kernel OOM-killed
//     the container in an exit file, durably (write, fsync, rename),
//
// and exits when the container has exited. Its state lives in one directory
// per container:
//
//	conmon.pid   the supervisor's PID
//	pid          the container init's PID, once created
//	create.err   why the create command failed, if it did
//	exit         {"exit_code":…, "exited_at":…, "oom_killed":…} once exited
package conmon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/sdk/helper"
)

// Exit is the content of the exit file.
type Exit struct {
	ExitCode  int32 `json:"exit_code"`
	ExitedAt  int64 `json:"exited_at"` // unix nanoseconds
	OOMKilled bool  `json:"oom_killed"`
}

// Files in a container's directory.
const (
	FileConmonPID = "conmon.pid"
	FilePID       = "pid"
	FileCreateErr = "create.err"
	FileExit      = "exit"
	FileInitPID   = "init.pid" // written by the runtime's create command
)

// Arg makes a binary run as a supervisor (see MaybeRun).
const Arg = "berth-conmon"

// SpareName is the process name (comm) of the one supervisor the monitor
// plugin keeps started ahead of need, until it is handed a container.
const SpareName = "berth-spare"

// setComm names the process (/proc/PID/comm, what ps and top show).
func setComm(name string) { _ = os.WriteFile("/proc/self/comm", []byte(name), 0) }

// HelperName is the small supervisor-only binary (plugins/monitor/cmd/
// berth-conmon) that Spawn runs when it sits next to the plugin's own
// binary: a supervisor lives as long as its container, so its size is paid
// once per container (about 1.2 MiB PSS, against 4 MiB for a re-executed
// multi-call plugin binary). Without it the plugin binary runs itself.
const HelperName = "berth-conmon"

// Options configure one supervisor.
type Options struct {
	Dir     string   // the container's state directory
	LogPath string   // CRI log file
	PIDFile string   // where the create command writes the init's PID (default Dir/init.pid)
	Argv    []string // the runtime's create command
	Env     []string
	// Notify: fd 3 is a pipe to close once the pid file or create.err is
	// written (Spawn sets it), so the caller need not poll for them.
	Notify bool
	// CreateTimeout ends the create command (0: no limit).
	CreateTimeout time.Duration
}

// Binary is the program Spawn runs as a supervisor.
func Binary() (string, error) { return helper.Binary(HelperName) }

// idle is a supervisor started ahead of need, waiting for its options on
// stdin: the next Spawn hands it a container instead of paying a process
// start on CreateContainer's path. If the plugin goes away, its stdin
// closes and it exits.
type idle struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	notifyR *os.File
}

var spare struct {
	sync.Mutex
	next *idle
}

// start starts a supervisor that waits for its options.
func startIdle() (*idle, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	notifyR, notifyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, Arg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.ExtraFiles = []*os.File{notifyW}
	in, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	notifyW.Close()
	if err != nil {
		notifyR.Close()
		if in != nil {
			in.Close()
		}
		return nil, err
	}
	go func() { _ = cmd.Wait() }()
	return &idle{cmd: cmd, in: in, notifyR: notifyR}, nil
}

// refill starts the next spare supervisor in the background.
func refill() {
	go func() {
		w, err := startIdle()
		if err != nil {
			return
		}
		spare.Lock()
		old := spare.next
		spare.next = w
		spare.Unlock()
		if old != nil {
			old.in.Close() // it exits on EOF
			old.notifyR.Close()
		}
	}()
}

// handOver writes a container's options to a waiting supervisor.
func handOver(w *idle, enc []byte) error {
	_, err := w.in.Write(enc)
	if cerr := w.in.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		w.notifyR.Close()
		_ = w.cmd.Process.Kill()
	}
	return err
}

// Spawn hands a container to a supervisor (the spare one, else a new one)
// in a session of its own and returns its PID and a channel closed once it
// has written the container's PID or its create error (or died). A
// supervisor is the calling plugin's child only until the plugin exits
// (then the system's init adopts it); a goroutine reaps it should it exit
// first.
func Spawn(o Options) (int, <-chan struct{}, error) {
	o.Notify = true
	enc, err := json.Marshal(o)
	if err != nil {
		return 0, nil, err
	}
	spare.Lock()
	w := spare.next
	spare.next = nil
	spare.Unlock()
	if w != nil {
		if err := handOver(w, enc); err != nil {
			w = nil // the spare died: start one now
		}
	}
	if w == nil {
		if w, err = startIdle(); err != nil {
			refill()
			return 0, nil, fmt.Errorf("spawn supervisor: %w", err)
		}
		if err := handOver(w, enc); err != nil {
			refill()
			return 0, nil, fmt.Errorf("spawn supervisor: hand over options: %w", err)
		}
	}
	created := make(chan struct{})
	go func() {
		// EOF (or a byte) once the supervisor is past the create, or died.
		var b [1]byte
		_, _ = w.notifyR.Read(b[:])
		w.notifyR.Close()
		close(created)
		// The next spare starts once this create is done, not during it:
		// on a small node they would compete for the CPU.
		refill()
	}()
	return w.cmd.Process.Pid, created, nil
}

// MaybeRun runs the supervisor when the binary was started as one; it
// returns false otherwise. Call it first in main.
func MaybeRun() bool {
	if len(os.Args) < 2 || os.Args[1] != Arg {
		return false
	}
	// A spare waiting for a container shows as SpareName in ps (comm),
	// a supervisor as Arg.
	setComm(SpareName)
	var o Options
	if err := json.NewDecoder(os.Stdin).Decode(&o); err != nil {
		os.Exit(2)
	}
	setComm(Arg)
	os.Exit(run(o))
	return true
}

// writeVolatile writes data to a temporary file and renames it to path, so
// readers see all or nothing, without fsync: for what is only true while
// this process lives (its PID, the container's PID), which a reboot makes
// moot anyway.
func writeVolatile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeFile writes data to a temporary file, fsyncs it and renames it to
// path: readers see all or nothing, and the content is on disk before the
// name points at it. The rename itself is durable once the directory is
// synced.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func run(o Options) int {
	// Detach stdio from whoever spawned us.
	if devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		unix.Dup2(int(devnull.Fd()), 0)
		unix.Dup2(int(devnull.Fd()), 1)
		unix.Dup2(int(devnull.Fd()), 2)
	}
	var notify *os.File
	if o.Notify {
		// Not for the create command or the container to inherit.
		syscall.CloseOnExec(3)
		notify = os.NewFile(3, "notify")
	}
	notifyCreated := func() {
		if notify != nil {
			notify.Close()
			notify = nil
		}
	}
	_ = writeVolatile(filepath.Join(o.Dir, FileConmonPID), []byte(strconv.Itoa(os.Getpid())))
	fail := func(msg string) int {
		_ = writeVolatile(filepath.Join(o.Dir, FileCreateErr), []byte(msg))
		notifyCreated()
		return 1
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fail("set child subreaper: " + err.Error())
	}
	// Reap children ourselves, from one place.
	sigchld := make(chan os.Signal, 64)
	signal.Notify(sigchld, unix.SIGCHLD)
	reopen := make(chan os.Signal, 1)
	signal.Notify(reopen, unix.SIGUSR1)
	signal.Ignore(unix.SIGPIPE, unix.SIGHUP, unix.SIGINT, unix.SIGTERM)

	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(err.Error())
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return fail(err.Error())
	}
	devnull, _ := os.Open(os.DevNull)
	if len(o.Argv) == 0 {
		return fail("no create command")
	}
	cmd := exec.Command(o.Argv[0], o.Argv[1:]...)
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, outW, errW
	// Its own process group, to end all of it should it hang.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fail("start create command: " + err.Error())
	}
	createPID := cmd.Process.Pid
	outW.Close()
	errW.Close()
	// The create must finish in time even when nobody waits for it any
	// more (the plugin that asked died, or gave up).
	var timedOut atomic.Bool
	if o.CreateTimeout > 0 {
		t := time.AfterFunc(o.CreateTimeout, func() {
			timedOut.Store(true)
			_ = syscall.Kill(-createPID, syscall.SIGKILL)
		})
		defer t.Stop()
	}
	// Wait for the create command itself (not cmd.Wait: we reap ourselves).
	createStatus, err := waitPID(createPID, sigchld)
	if timedOut.Load() {
		return fail(fmt.Sprintf("create command did not finish within %v", o.CreateTimeout))
	}
	if err != nil || createStatus.ExitStatus() != 0 {
		// The container never started: what runc said is in the pipes.
		b, _ := io.ReadAll(io.MultiReader(errR, outR))
		msg := strings.TrimSpace(string(b))
		if msg == "" {
			msg = fmt.Sprintf("create command exited with %v", createStatus)
		}
		return fail(msg)
	}
	pidFile := o.PIDFile
	if pidFile == "" {
		pidFile = filepath.Join(o.Dir, FileInitPID)
	}
	pidBytes, err := os.ReadFile(pidFile)
	if err != nil {
		return fail("read the container's pid: " + err.Error())
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidBytes)))
	if err != nil || pid <= 0 {
		return fail("bad container pid " + string(pidBytes))
	}
	oomBefore, oomFile := oomKills(pid)
	log, err := newLogWriter(o.LogPath)
	if err != nil {
		return fail("open log: " + err.Error())
	}
	if err := writeVolatile(filepath.Join(o.Dir, FilePID), []byte(strconv.Itoa(pid))); err != nil {
		return fail(err.Error())
	}
	notifyCreated()
	var wg sync.WaitGroup
	for _, s := range []struct {
		r    io.Reader
		name string
	}{{outR, "stdout"}, {errR, "stderr"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log.copy(s.r, s.name)
		}()
	}
	go func() {
		for range reopen {
			log.reopen()
		}
	}()

	status, _ := waitPID(pid, sigchld)
	exitedAt := time.Now()
	code := int32(status.ExitStatus())
	if status.Signaled() {
		code = 128 + int32(status.Signal())
	}
	oom := oomFile != "" && oomCount(oomFile) > oomBefore
	// Drain what the container wrote; processes it left behind may hold the
	// pipes, so do not wait forever.
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
	}
	// Every log line is in the file by now, so the exit may show before
	// the log's fsync: the exit file's own bytes are synced before its
	// rename, the log and the directory right after.
	b, _ := json.Marshal(Exit{ExitCode: code, ExitedAt: exitedAt.UnixNano(), OOMKilled: oom})
	err = writeFile(filepath.Join(o.Dir, FileExit), b)
	log.close()
	syncDir(o.Dir)
	if err != nil {
		return 1
	}
	return 0
}

// waitPID reaps children until pid exits, returning its status. Other
// children (orphans reparented to us) are reaped on the way.
func waitPID(pid int, sigchld <-chan os.Signal) (unix.WaitStatus, error) {
	for {
		for {
			var ws unix.WaitStatus
			got, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return 0, err
			}
			if got <= 0 {
				break
			}
			if got == pid {
				return ws, nil
			}
		}
		select {
		case <-sigchld:
		case <-time.After(time.Second):
		}
	}
}

// oomKills returns the container cgroup's OOM kill count and the file it
// was read from (memory.oom_control on cgroup v1, memory.events on v2).
func oomKills(pid int) (int, string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return 0, ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var f string
		switch {
		case strings.Contains(","+parts[1]+",", ",memory,"):
			f = filepath.Join("/sys/fs/cgroup/memory", parts[2], "memory.oom_control")
		case parts[0] == "0" && parts[1] == "":
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
				f = filepath.Join("/sys/fs/cgroup", parts[2], "memory.events")
			}
		}
		if f != "" {
			if _, err := os.Stat(f); err == nil {
				return oomCount(f), f
			}
		}
	}
	return 0, ""
}

func oomCount(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// ReadExit reads a container's exit file; nil when it has not exited.
func ReadExit(dir string) (*Exit, error) {
	b, err := os.ReadFile(filepath.Join(dir, FileExit))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e Exit
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, err
	}
	return &e, nil
}
