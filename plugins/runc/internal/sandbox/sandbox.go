// Package sandbox gives runc pods their namespaces without an infra
// container: network, IPC and UTS namespaces are created on a locked OS
// thread and pinned by bind mounts (what CRI-O's pinns does), and a pod
// PID namespace is held by a small init of Berth's own that reaps zombies.
package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/sdk/helper"
)

// Namespace types that can be pinned.
const (
	NetNS = "net"
	IPCNS = "ipc"
	UTSNS = "uts"
	PIDNS = "pid"
)

var cloneFlags = map[string]int{NetNS: unix.CLONE_NEWNET, IPCNS: unix.CLONE_NEWIPC, UTSNS: unix.CLONE_NEWUTS}

// Pin creates the given namespaces (net, ipc, uts) and bind-mounts them as
// files in dir, sets the hostname in the UTS namespace and brings loopback
// up in the network namespace. It returns the pinned paths by type. On
// error nothing is left pinned.
func Pin(dir, hostname string, types []string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pin dir: %w", err)
	}
	flags := 0
	for _, t := range types {
		f, ok := cloneFlags[t]
		if !ok {
			return nil, fmt.Errorf("cannot pin a %q namespace", t)
		}
		flags |= f
	}
	paths := map[string]string{}
	if flags == 0 {
		return paths, nil
	}
	type result struct {
		paths map[string]string
		err   error
	}
	done := make(chan result, 1)
	go func() {
		// This thread's namespaces change: it must never run another
		// goroutine, so it is not unlocked and dies with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(flags); err != nil {
			done <- result{err: fmt.Errorf("unshare: %w", err)}
			return
		}
		if flags&unix.CLONE_NEWUTS != 0 && hostname != "" {
			if err := unix.Sethostname([]byte(hostname)); err != nil {
				done <- result{err: fmt.Errorf("sethostname: %w", err)}
				return
			}
		}
		if flags&unix.CLONE_NEWNET != 0 {
			if err := loopbackUp(); err != nil {
				done <- result{err: fmt.Errorf("loopback up: %w", err)}
				return
			}
		}
		tid := unix.Gettid()
		pinned := map[string]string{}
		for _, t := range types {
			p := filepath.Join(dir, t)
			if err := bindNS(fmt.Sprintf("/proc/self/task/%d/ns/%s", tid, t), p); err != nil {
				Unpin(pinned)
				done <- result{err: err}
				return
			}
			pinned[t] = p
		}
		done <- result{paths: pinned}
	}()
	r := <-done
	return r.paths, r.err
}

func bindNS(src, dst string) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_RDONLY, 0o400)
	if err != nil {
		return fmt.Errorf("create pin file: %w", err)
	}
	f.Close()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		os.Remove(dst)
		return fmt.Errorf("pin %s: %w", src, err)
	}
	return nil
}

// PinPath bind-mounts an existing namespace file (for example the pod
// init's /proc/PID/ns/pid) at dst.
func PinPath(src, dst string) error { return bindNS(src, dst) }

// Unpin unmounts and removes pinned namespace files; missing ones are fine.
func Unpin(paths map[string]string) error {
	var errs []error
	for _, p := range paths {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
			continue
		}
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// loopbackUp sets IFF_UP on lo in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// InitArg is the argument that makes a binary run as a pod init (see
// MaybeRunInit).
const InitArg = "berth-pod-init"

// InitHelperName is the small init-only program (plugins/runc/cmd/
// berth-pod-init) that StartInit runs when it sits next to the plugin's own
// binary: a pod init lives as long as its pod, so its size is paid once per
// pod. Without it the plugin binary runs itself.
const InitHelperName = "berth-pod-init"

// InitBinary is the program StartInit runs as a pod init.
func InitBinary() (string, error) { return helper.Binary(InitHelperName) }

// StartInit starts a pod init in a new PID namespace and a session of its
// own, and returns its PID. It is the plugin's child only until the plugin
// exits (the system's init adopts it then); a goroutine reaps it should it
// exit first.
func StartInit() (int, error) {
	bin, err := InitBinary()
	if err != nil {
		return 0, fmt.Errorf("start pod init: %w", err)
	}
	cmd := exec.Command(bin, InitArg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: true}
	// Stdio stays /dev/null (exec.Cmd's default for nil).
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start pod init: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	return cmd.Process.Pid, nil
}

// MaybeRunInit runs the pod init when the binary was started as one; it
// returns false otherwise. Call it first in main.
func MaybeRunInit() bool {
	if len(os.Args) < 2 || os.Args[1] != InitArg {
		return false
	}
	runInit()
	os.Exit(0)
	return true
}

// runInit is PID 1 of a pod PID namespace: it reaps every child and exits
// on SIGTERM or SIGINT.
func runInit() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT)
	for s := range sigs {
		if s != unix.SIGCHLD {
			return
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

// InitAlive reports whether pid is a live pod init.
func InitAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(strings.NewReader(strings.ReplaceAll(string(b), "\x00", "\n")))
	for sc.Scan() {
		if sc.Text() == InitArg {
			return true
		}
	}
	return false
}

// InitOf finds the pod init holding the pinned PID namespace at path (0 if
// none): the process whose PID namespace has the pinned file's inode and
// which runs as a pod init.
func InitOf(path string) int {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	want := fmt.Sprintf("pid:[%d]", st.Ino)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err == nil && l == want && InitAlive(pid) {
			return pid
		}
	}
	return 0
}

// Interface is one network interface's counters, from /proc/net/dev.
type Interface struct {
	Name                                  string
	RxBytes, RxPackets, RxErrors, RxDrops uint64
	TxBytes, TxPackets, TxErrors, TxDrops uint64
}

// Interfaces reads the counters of every interface of the network
// namespace pinned at path ("" for the host's), loopback included.
func Interfaces(path string) ([]Interface, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if path != "" {
			fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				done <- result{err: fmt.Errorf("open %s: %w", path, err)}
				return
			}
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
			if err != nil {
				// The thread may be half-switched: never reuse it.
				done <- result{err: fmt.Errorf("setns %s: %w", path, err)}
				return
			}
		}
		b, err := os.ReadFile("/proc/thread-self/net/dev")
		if path == "" {
			runtime.UnlockOSThread()
		}
		// After a setns the thread stays locked and dies with this
		// goroutine, so no other goroutine runs in the pod's netns.
		done <- result{b, err}
	}()
	r := <-done
	if r.err != nil {
		return nil, r.err
	}
	return parseNetDev(r.b), nil
}

func parseNetDev(b []byte) []Interface {
	var out []Interface
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || strings.Contains(name, "|") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			continue
		}
		n := make([]uint64, 16)
		for i := range n {
			n[i], _ = strconv.ParseUint(f[i], 10, 64)
		}
		out = append(out, Interface{Name: name, RxBytes: n[0], RxPackets: n[1], RxErrors: n[2], RxDrops: n[3],
			TxBytes: n[8], TxPackets: n[9], TxErrors: n[10], TxDrops: n[11]})
	}
	return out
}

// InitHolds reports whether pid is a live pod init whose PID namespace is
// the one pinned at path (so a recycled PID never passes for the init).
func InitHolds(pid int, path string) bool {
	if pid <= 0 || !InitAlive(pid) {
		return false
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false
	}
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	return err == nil && l == fmt.Sprintf("pid:[%d]", st.Ino)
}
