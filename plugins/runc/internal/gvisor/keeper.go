package gvisor

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/sdk/helper"
)

// Runsc is the runsc binary with its state root and global flags.
type Runsc struct {
	Binary string   `json:"binary"`
	Root   string   `json:"root"`
	Args   []string `json:"args,omitempty"`
}

// Argv is the command line of a runsc subcommand.
func (r Runsc) Argv(args ...string) []string {
	out := append([]string{r.Binary, "--root", r.Root}, r.Args...)
	return append(out, args...)
}

func (r Runsc) Command(ctx context.Context, args ...string) *exec.Cmd {
	argv := r.Argv(args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// Keeper is what the create command and the keeper of one container know.
type Keeper struct {
	Runsc   Runsc  `json:"runsc"`
	ID      string `json:"id"`
	Bundle  string `json:"bundle"`
	Socket  string `json:"socket"`
	PIDFile string `json:"pid_file"`
}

// Arguments of the plugin binary's helper modes (see MaybeRun).
const (
	CreateArg = "berth-gvisor-create"
	KeeperArg = "berth-gvisor-keeper"
)

// HelperName is the small program (plugins/runc/cmd/berth-gvisor-keeper)
// that runs the create command and the keeper when it sits next to the
// plugin's own binary: a keeper lives as long as its container. Without it
// the plugin binary runs itself.
const HelperName = "berth-gvisor-keeper"

// Binary is the program that runs the create command and the keeper.
func Binary() (string, error) { return helper.Binary(HelperName) }

// Socket is the keeper's socket for container id under dir.
func Socket(dir, id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(dir, hex.EncodeToString(sum[:8])+".sock")
}

// CreateArgv is the create command the monitor runs for a container of a
// gVisor pod: the plugin binary (self) creating the container with runsc
// and leaving a keeper behind. Like `runc create`, it exits once the
// container is created, having written the PID the supervisor waits for
// (the keeper's) to k.PIDFile.
func CreateArgv(self string, k Keeper) ([]string, error) {
	b, err := json.Marshal(k)
	if err != nil {
		return nil, err
	}
	return []string{self, CreateArg, string(b)}, nil
}

// MaybeRun runs the create command or the keeper when the binary was
// started as one; it returns false otherwise. Call it first in main.
func MaybeRun() bool {
	if len(os.Args) < 3 {
		return false
	}
	switch os.Args[1] {
	case CreateArg:
		os.Exit(runCreate(os.Args[2]))
	case KeeperArg:
		os.Exit(runKeeper(os.Args[2]))
	}
	return false
}

// runCreate is the create command. Its standard streams are the
// supervisor's pipes; it hands them to the keeper, and reports a failure on
// stderr (the supervisor records it as the create error).
func runCreate(arg string) int {
	var k Keeper
	if err := json.Unmarshal([]byte(arg), &k); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", CreateArg, err)
		return 2
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		return 1
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return fail("%v", err)
	}
	// runsc create leaves the container's gofer running with the
	// command's streams: give it a file, never the supervisor's pipes
	// (they would stay open after the container exits).
	logf, err := os.CreateTemp(filepath.Dir(k.Socket), "create-*.log")
	if err != nil {
		return fail("%v", err)
	}
	defer os.Remove(logf.Name())
	cmd := k.Runsc.Command(context.Background(), "create", "--bundle", k.Bundle, k.ID)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(logf.Name())
		return fail("runsc create: %v: %s", err, strings.TrimSpace(string(b)))
	}
	undo := func() {
		_ = k.Runsc.Command(context.Background(), "delete", "--force", k.ID).Run()
	}
	os.Remove(k.Socket)
	addr, closeAddr, err := sockAddr(k.Socket)
	if err != nil {
		undo()
		return fail("keeper socket: %v", err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	closeAddr()
	if err != nil {
		undo()
		return fail("keeper socket: %v", err)
	}
	l.SetUnlinkOnClose(false)
	lf, err := l.File()
	if err != nil {
		undo()
		return fail("keeper socket: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		undo()
		return fail("%v", err)
	}
	keeper := exec.Command(self, KeeperArg, arg)
	keeper.Stdin, keeper.Stdout, keeper.Stderr = devnull, os.Stdout, os.Stderr
	keeper.ExtraFiles = []*os.File{lf}
	keeper.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := keeper.Start(); err != nil {
		undo()
		os.Remove(k.Socket)
		return fail("start keeper: %v", err)
	}
	// The keeper becomes the supervisor's child (it is a subreaper) once
	// this command exits.
	if err := writeFileAtomic(k.PIDFile, []byte(strconv.Itoa(keeper.Process.Pid)), 0o600); err != nil {
		_ = keeper.Process.Kill()
		undo()
		os.Remove(k.Socket)
		return fail("write pid file: %v", err)
	}
	return 0
}

// runKeeper serves the container's keeper socket (fd 3): "start" runs
// `runsc start` with the supervisor's streams, after which the keeper waits
// for the container and exits with its status; "abort SIG" before a start
// ends the keeper as if the container had been killed by SIG.
func runKeeper(arg string) int {
	var k Keeper
	if err := json.Unmarshal([]byte(arg), &k); err != nil {
		return 2
	}
	lf := os.NewFile(3, "keeper-socket")
	ln, err := net.FileListener(lf)
	lf.Close()
	if err != nil {
		return 2
	}
	exit := func(code int) {
		os.Remove(k.Socket)
		os.Exit(code)
	}
	started := false
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				exit(2)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		verb, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		reply := func(s string) { _, _ = io.WriteString(conn, s+"\n"); conn.Close() }
		switch verb {
		case "start":
			if started {
				reply("ok")
				continue
			}
			if err := k.start(); err != nil {
				reply("error " + err.Error())
				continue
			}
			started = true
			// The sandbox holds the container's streams now; let go of
			// ours so the supervisor sees them close when the container
			// exits.
			if devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
				_ = unix.Dup2(int(devnull.Fd()), 1)
				_ = unix.Dup2(int(devnull.Fd()), 2)
				devnull.Close()
			}
			reply("ok")
			go func() { exit(k.wait()) }()
		case "abort":
			if started {
				reply("started")
				continue
			}
			sig, err := strconv.Atoi(rest)
			if err != nil || sig <= 0 || sig > 64 {
				sig = int(syscall.SIGKILL)
			}
			reply("aborted")
			exit(128 + sig)
		default:
			reply("error unknown request " + strconv.Quote(verb))
		}
	}
}

// start runs `runsc start` with this process's standard streams, which
// runsc hands to the container. A failure's message is taken from runsc's
// log (its stderr is the container's).
func (k *Keeper) start() error {
	logFile := strings.TrimSuffix(k.Socket, ".sock") + ".start.log"
	defer os.Remove(logFile)
	r := k.Runsc
	r.Args = append(append([]string{}, r.Args...), "--log="+logFile)
	cmd := r.Command(context.Background(), "start", k.ID)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("runsc start: %v: %s", err, lastLogMessage(logFile))
	}
	return nil
}

// lastLogMessage is the message of runsc's last log line.
func lastLogMessage(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	last := lines[len(lines)-1]
	var entry struct {
		Msg string `json:"msg"`
	}
	if json.Unmarshal([]byte(last), &entry) == nil && entry.Msg != "" {
		return entry.Msg
	}
	return last
}

// wait waits for the container with `runsc wait` and returns its exit
// status. When runsc cannot wait because the sandbox is gone, the
// container died with it: 137, as if killed.
func (k *Keeper) wait() int {
	for {
		var out bytes.Buffer
		cmd := k.Runsc.Command(context.Background(), "wait", k.ID)
		cmd.Stdout = &out
		if err := cmd.Run(); err == nil {
			var res struct {
				ExitStatus int `json:"exitStatus"`
			}
			if json.Unmarshal(out.Bytes(), &res) == nil {
				return res.ExitStatus
			}
		}
		out.Reset()
		cmd = k.Runsc.Command(context.Background(), "state", k.ID)
		cmd.Stdout = &out
		var st struct {
			Status string `json:"status"`
		}
		if err := cmd.Run(); err != nil || json.Unmarshal(out.Bytes(), &st) != nil || st.Status == "stopped" {
			return 128 + int(syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Request sends one request to a container's keeper and returns its reply.
// ErrNoKeeper means nothing listens (the keeper has exited).
func Request(ctx context.Context, socket, req string) (string, error) {
	addr, closeAddr, err := sockAddr(socket)
	if err != nil {
		return "", err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", addr)
	closeAddr()
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return "", ErrNoKeeper
		}
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(conn, req+"\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("keeper: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// ErrNoKeeper: the container's keeper is not running.
var ErrNoKeeper = errors.New("the container's keeper is not running")

// sockAddr returns an address for a unix socket path, going through an
// O_PATH descriptor of its directory when the path is too long for
// sockaddr_un; call the closer once bound or connected.
func sockAddr(path string) (string, func(), error) {
	if len(path) < 100 {
		return path, func() {}, nil
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(path))
	if len(addr) >= 100 {
		unix.Close(fd)
		return "", nil, fmt.Errorf("socket path %s is too long", path)
	}
	return addr, func() { unix.Close(fd) }, nil
}
