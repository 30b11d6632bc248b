package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/host/plugins"
)

// The tests of this file check that a pod leaves nothing on the host once it
// is removed: not after a hundred create-and-remove cycles, not after the
// host was killed with SIGKILL half-way through creating one. Other tests
// and other daemons run on the same machine at the same time, so every check
// looks only at what belongs to this test's daemon: its directories, the
// cgroup its pods are placed under (leakCgroupRoot) and processes that run
// its binaries, name its directories or live in its pods' cgroups.

// leakCgroupRoot is the cgroup (in every hierarchy) under which the pods of
// one test daemon are placed as their cgroup_parent: unique to this test
// process and daemon.
func leakCgroupRoot(d *daemon) string {
	return fmt.Sprintf("/berth-leaktest-%d-%08x", os.Getpid(), crc32.ChecksumIEEE([]byte(d.dir)))
}

// leakPodConfig is podConfig with the pod's cgroup under leakCgroupRoot.
func leakPodConfig(d *daemon, name string) *runtimeapi.PodSandboxConfig {
	c := podConfig(d, name)
	c.Linux.CgroupParent = leakCgroupRoot(d) + "/pod-" + name
	return c
}

// Where the daemon and its plugins keep per-pod and per-container state
// (see host/cri, plugins/runc, plugins/monitor, plugins/overlay).
func sandboxDirs(d *daemon) string { return filepath.Join(d.runroot, "sandboxes") }

func containerDirs(d *daemon) string { return filepath.Join(d.runroot, "containers") }

func pinDirs(d *daemon) string { return filepath.Join(d.runroot, "plugins/run/runc/sandboxes") }

func runcStateDirs(d *daemon) string { return filepath.Join(d.runroot, "plugins/run/runc/state/runc") }

func monitorDirs(d *daemon) string { return filepath.Join(d.root, "plugins/monitor/containers") }

func layerDirs(d *daemon) string { return filepath.Join(d.root, "plugins/overlay/storage/overlay") }

// stateDirs are the directories whose entries are per pod or per container
// (or, for the layer store, per image layer, so compared with a baseline).
func stateDirs(d *daemon) []string {
	return []string{sandboxDirs(d), containerDirs(d), pinDirs(d), runcStateDirs(d), monitorDirs(d), layerDirs(d)}
}

// storageContainers are the containers the overlay plugin's
// containers/storage knows (its overlay-containers/containers.json, and
// volatile-containers.json for volatile ones), by ID, with whether each is
// a removed one whose layer is still being deleted in the background
// (renamed berth-removed-ID, see plugins/overlay).
func storageContainers(d *daemon) map[string]bool {
	out := map[string]bool{}
	for _, f := range []string{"containers.json", "volatile-containers.json"} {
		b, err := os.ReadFile(filepath.Join(d.root, "plugins/overlay/storage/overlay-containers", f))
		if err != nil {
			continue
		}
		var cs []struct {
			ID    string   `json:"id"`
			Names []string `json:"names"`
		}
		_ = json.Unmarshal(b, &cs)
		for _, c := range cs {
			out[c.ID] = len(c.Names) > 0 && strings.HasPrefix(c.Names[0], "berth-removed-")
		}
	}
	return out
}

// proc is one process of the machine, as /proc shows it.
type proc struct {
	pid, ppid int
	comm      string
	state     string // R, S, Z, ...
	exe, cwd  string
	cmdline   string // arguments joined by spaces
	cgroup    string // /proc/PID/cgroup, all hierarchies
}

func readProcs() []proc {
	entries, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		base := "/proc/" + e.Name()
		st, err := os.ReadFile(base + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(st, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(st[i+1:]))
		if len(f) < 2 {
			continue
		}
		p := proc{pid: pid, state: f[0]}
		if j := bytes.IndexByte(st, '('); j >= 0 && j < i {
			p.comm = string(st[j+1 : i])
		}
		p.ppid, _ = strconv.Atoi(f[1])
		p.exe, _ = os.Readlink(base + "/exe")
		p.cwd, _ = os.Readlink(base + "/cwd")
		cmd, _ := os.ReadFile(base + "/cmdline")
		p.cmdline = strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		cg, _ := os.ReadFile(base + "/cgroup")
		p.cgroup = string(cg)
		out = append(out, p)
	}
	return out
}

// isSpare reports whether p is the supervisor the running monitor plugin
// keeps started ahead of need (named berth-spare until it is handed a
// container): part of the daemon, not of any pod.
func isSpare(p proc, own map[int]string) bool {
	return p.comm == "berth-spare" && own[p.ppid] == "plugin monitor"
}

// awaitingInit reports whether p is a zombie left to the system's init to
// reap: it holds nothing but its PID (a container's process killed after
// its supervisor, for one). This machine's init reaps about once a second.
func awaitingInit(p proc) bool { return p.state == "Z" && p.ppid == 1 }

// daemonRunning reports whether the test's berth serve runs.
func daemonRunning(d *daemon) bool { return d.cmd != nil && d.cmd.ProcessState == nil }

// daemonPIDs are the processes that may legitimately run while the daemon
// is up: berth serve itself and its plugins, by name.
func daemonPIDs(d *daemon) map[int]string {
	own := map[int]string{}
	if !daemonRunning(d) {
		return own
	}
	own[d.cmd.Process.Pid] = "berth serve"
	for _, s := range d.plugins() {
		if s.PID > 0 {
			own[s.PID] = "plugin " + s.Name
		}
	}
	return own
}

// ofDaemon says why a process belongs to the daemon d (or to the given
// pods), or "" when it does not: it runs one of the daemon's binaries (a
// plugin, a pod init, a container supervisor), its arguments or working
// directory name the daemon's directories (runc), it lives in a cgroup of
// the daemon's pods (a container's processes), or it is a child of the
// daemon or of a plugin.
func ofDaemon(d *daemon, p proc, own map[int]string, podIDs []string) string {
	switch {
	case strings.HasPrefix(p.exe, d.dir+"/"):
		return "runs " + p.exe
	case strings.Contains(p.cmdline, d.dir+"/"):
		return "its arguments name the daemon's directories"
	case strings.HasPrefix(p.cwd, d.dir+"/"):
		return "works in " + p.cwd
	case strings.Contains(p.cgroup, leakCgroupRoot(d)+"/"):
		return "in a pod cgroup"
	case own[p.ppid] != "":
		return "child of " + own[p.ppid]
	}
	for _, id := range podIDs {
		if strings.Contains(p.cgroup, "/pod-"+id[:12]) {
			return "in the cgroup of pod " + id
		}
	}
	return ""
}

// mountPoints are the mount points of this mount namespace under dir, with
// their filesystem types.
func mountPoints(dir string) map[string]string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 10 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp != dir && !strings.HasPrefix(mp, dir+"/") {
			continue
		}
		typ := ""
		for i := 6; i < len(f)-1; i++ {
			if f[i] == "-" {
				typ = f[i+1]
				break
			}
		}
		out[mp] = typ
	}
	return out
}

var mountinfoEscape = regexp.MustCompile(`\\[0-7]{3}`)

func unescapeMountinfo(s string) string {
	return mountinfoEscape.ReplaceAllStringFunc(s, func(e string) string {
		n, _ := strconv.ParseUint(e[1:], 8, 8)
		return string(rune(n))
	})
}

// snapshotLeaks lists what the daemon d and the given pods have on the
// machine beyond the daemon's own processes: mounts under the daemon's
// directories, entries of its per-pod and per-container state directories
// (pinned namespaces, sandbox and container directories, runc, monitor and
// storage state), cgroups under its pods' cgroup root (and the default
// /berth/pod-<id> cgroups of the given pods), and processes of its pods,
// pod inits, supervisors or children of the daemon and plugins. A daemon at
// rest with no pods has only image layers and the storage's own mounts, so
// compare with a snapshot taken before the first pod.
func snapshotLeaks(t *testing.T, d *daemon, podIDs ...string) []string {
	t.Helper()
	var out []string
	for mp, typ := range mountPoints(d.dir) {
		out = append(out, fmt.Sprintf("mount %s (%s)", mp, typ))
	}
	for _, dir := range stateDirs(d) {
		for name := range entryNames(dir) {
			out = append(out, "file "+filepath.Join(dir, name))
		}
	}
	for id := range storageContainers(d) {
		out = append(out, "storage container "+id)
	}
	out = append(out, podCgroups(d, podIDs)...)
	own := daemonPIDs(d)
	for _, p := range readProcs() {
		if own[p.pid] != "" || p.pid == os.Getpid() || isSpare(p, own) {
			continue
		}
		if why := ofDaemon(d, p, own, podIDs); why != "" {
			out = append(out, fmt.Sprintf("process %d [%s] %q: %s", p.pid, p.state, p.cmdline, why))
		}
	}
	sort.Strings(out)
	return out
}

// podCgroups lists the cgroups under the daemon's pod cgroup root, and the
// default cgroups of the given pods, in every hierarchy.
func podCgroups(d *daemon, podIDs []string) []string {
	var out []string
	hierarchies, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hierarchies {
		base := filepath.Join("/sys/fs/cgroup", h.Name())
		root := filepath.Join(base, leakCgroupRoot(d))
		_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() && p != root {
				out = append(out, "cgroup "+p)
			}
			return nil
		})
		for _, id := range podIDs {
			if p := filepath.Join(base, "berth", "pod-"+id[:12]); isDir(p) {
				out = append(out, "cgroup "+p)
			}
		}
	}
	return out
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// leaksSince is what snapshotLeaks lists now and did not in base, once the
// machine has settled (a pod init or a supervisor may take a moment to be
// reaped), or after 10s.
func leaksSince(t *testing.T, d *daemon, base []string, podIDs ...string) []string {
	t.Helper()
	old := map[string]bool{}
	for _, s := range base {
		old[s] = true
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var leaks []string
		for _, s := range snapshotLeaks(t, d, podIDs...) {
			if !old[s] {
				leaks = append(leaks, s)
			}
		}
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cleanupLeaks registers, to run before podClients' own cleanup, the
// removal of whatever a failed test left: every pod through the CRI, then,
// with the daemon stopped, any process, mount or cgroup of it still there
// (reported as an error, as the daemon should have removed them), and
// finally the pod cgroup root itself, which berth does not own.
func cleanupLeaks(t *testing.T, d *daemon) {
	t.Cleanup(func() {
		if daemonRunning(d) {
			if rc, done, err := dialCRI(d.socket); err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				removeAllPods(ctx, t, rc)
				cancel()
				done()
			}
		}
		d.stop()
		// The plugins exit with the daemon, within a moment; anything else
		// of it is killed.
		for i := 0; i < 100; i++ {
			var alive []proc
			for _, p := range readProcs() {
				if p.pid != os.Getpid() && p.state != "Z" && ofDaemon(d, p, nil, nil) != "" {
					alive = append(alive, p)
				}
			}
			if len(alive) == 0 {
				break
			}
			if i < 20 {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for _, p := range alive {
				if i == 20 {
					t.Errorf("left 2s after berth stopped, killing it: process %d %q", p.pid, p.cmdline)
				}
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
		}
		mps := mountPoints(d.dir)
		var sorted []string
		for mp := range mps {
			sorted = append(sorted, mp)
		}
		sort.Sort(sort.Reverse(sort.StringSlice(sorted))) // children first
		for _, mp := range sorted {
			t.Errorf("left mounted after berth stopped, unmounting it: %s (%s)", mp, mps[mp])
			_ = unix.Unmount(mp, unix.MNT_DETACH)
		}
		hierarchies, _ := os.ReadDir("/sys/fs/cgroup")
		for _, h := range hierarchies {
			root := filepath.Join("/sys/fs/cgroup", h.Name(), leakCgroupRoot(d))
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
				if err == nil && e.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- { // children first
				if dirs[i] != root {
					t.Errorf("cgroup left after berth stopped, removing it: %s", dirs[i])
				}
				if err := os.Remove(dirs[i]); err != nil {
					t.Errorf("remove cgroup %s: %v", dirs[i], err)
				}
			}
		}
	})
}

// removeAllPods stops and removes every pod the daemon knows.
func removeAllPods(ctx context.Context, t *testing.T, rc runtimeapi.RuntimeServiceClient) {
	t.Helper()
	pods, err := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Errorf("ListPodSandbox: %v", err)
		return
	}
	for _, p := range pods.Items {
		if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("StopPodSandbox %s: %v", p.Id, err)
		}
		if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("RemovePodSandbox %s: %v", p.Id, err)
		}
	}
}

// fdCounts are the numbers of open file descriptors of berth serve and of
// each plugin process.
func fdCounts(t *testing.T, d *daemon) map[string]int {
	t.Helper()
	out := map[string]int{}
	for pid, name := range daemonPIDs(d) {
		entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = len(entries)
	}
	return out
}

// assertNoneLeft checks that the daemon knows no pod or container any more
// and that nothing of them is left on the machine.
func assertNoneLeft(t *testing.T, d *daemon, rc runtimeapi.RuntimeServiceClient, base []string, podIDs []string) {
	t.Helper()
	ctx := context.Background()
	if pods, err := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil || len(pods.Items) != 0 {
		t.Errorf("pods left in the store: %v %v", pods.GetItems(), err)
	}
	if cs, err := rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil || len(cs.Containers) != 0 {
		t.Errorf("containers left in the store: %v %v", cs.GetContainers(), err)
	}
	for _, l := range leaksSince(t, d, base, podIDs...) {
		t.Errorf("leaked: %s", l)
	}
}

// TestIntegrationCycleNoLeaks runs a hundred pod lifecycles (a pod, a
// long-running and a short-lived container, each stopped and removed, then
// the pod) and checks that nothing is left of them and that neither berth
// nor its plugins hold more file descriptors as the cycles go on.
func TestIntegrationCycleNoLeaks(t *testing.T) {
	d, rc, image := podClients(t)
	cleanupLeaks(t, d)
	base := snapshotLeaks(t, d)
	ctx := context.Background()
	const cycles = 100
	var podIDs []string
	var fdAt10 map[string]int
	start := time.Now()
	for i := 1; i <= cycles; i++ {
		pcfg := leakPodConfig(d, fmt.Sprintf("cycle-%d", i))
		pod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
		if err != nil {
			t.Fatalf("cycle %d: RunPodSandbox: %v", i, err)
		}
		podIDs = append(podIDs, pod.PodSandboxId)
		var ids []string
		for _, c := range []*runtimeapi.ContainerConfig{ctrConfig("sleeper", image, "sleep 3600"), ctrConfig("greeter", image, "echo hello")} {
			r, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg, Config: c})
			if err != nil {
				t.Fatalf("cycle %d: CreateContainer %s: %v", i, c.Metadata.Name, err)
			}
			ids = append(ids, r.ContainerId)
		}
		for _, id := range ids {
			if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
				t.Fatalf("cycle %d: StartContainer: %v", i, err)
			}
		}
		if st := waitState(t, rc, ids[1], runtimeapi.ContainerState_CONTAINER_EXITED); st.ExitCode != 0 {
			t.Fatalf("cycle %d: short-lived container: %+v", i, st)
		}
		for _, id := range ids {
			if _, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
				t.Fatalf("cycle %d: StopContainer: %v", i, err)
			}
			if _, err := rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
				t.Fatalf("cycle %d: RemoveContainer: %v", i, err)
			}
		}
		if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
			t.Fatalf("cycle %d: StopPodSandbox: %v", i, err)
		}
		if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
			t.Fatalf("cycle %d: RemovePodSandbox: %v", i, err)
		}
		if i == 10 {
			fdAt10 = fdCounts(t, d)
		}
	}
	t.Logf("%d cycles in %v", cycles, time.Since(start).Round(time.Millisecond))
	fdAt100 := fdCounts(t, d)
	t.Logf("open fds at cycle 10: %v, at cycle %d: %v", fdAt10, cycles, fdAt100)
	// A few descriptors come and go (gRPC connections, the store's file);
	// one per cycle or per container would show as 90 or 180.
	const slack = 8
	for name, n := range fdAt100 {
		if n > fdAt10[name]+slack {
			t.Errorf("%s holds %d open fds after %d cycles, %d after 10: a descriptor leak", name, n, cycles, fdAt10[name])
		}
	}
	assertNoneLeft(t, d, rc, base, podIDs)
}

// medianDuration runs call three times, each on a new connection to the
// daemon, and returns the median time it took, connecting included.
func medianDuration(t *testing.T, d *daemon, call func(rc runtimeapi.RuntimeServiceClient, i int)) time.Duration {
	t.Helper()
	var took []time.Duration
	for i := 0; i < 3; i++ {
		conn, err := grpcConn(d.socket)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		call(runtimeapi.NewRuntimeServiceClient(conn), i)
		took = append(took, time.Since(start))
		conn.Close()
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	return took[1]
}

// killDaemon kills berth serve with SIGKILL, by PID, and reaps it.
func killDaemon(t *testing.T, d *daemon) {
	t.Helper()
	if err := syscall.Kill(d.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
}

// checkPluginsAfterRestart checks that after a restart of the host every
// plugin is running again, adopted (same process) or restarted (the old
// process gone), and that the runtime is ready. It returns the plugins'
// PIDs.
func checkPluginsAfterRestart(t *testing.T, d *daemon, before map[string]int) map[string]int {
	t.Helper()
	now := map[string]int{}
	for _, s := range d.plugins() {
		now[s.Name] = s.PID
		if s.State != plugins.StateRunning || s.PID == 0 {
			t.Errorf("plugin %s after the restart: %+v", s.Name, s)
			continue
		}
		if old := before[s.Name]; old != 0 && old != s.PID {
			t.Logf("plugin %s restarted rather than adopted (pid %d -> %d)", s.Name, old, s.PID)
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", old)); err == nil && !strings.Contains(string(b), ") Z") {
				t.Errorf("plugin %s: the old process %d still runs next to the new %d", s.Name, old, s.PID)
			}
		}
	}
	if len(now) != 5 {
		t.Errorf("plugins after the restart: %v", now)
	}
	out, _ := d.run(d.flags("status")...)
	if !regexp.MustCompile(`(?m)^RuntimeReady\s+true$`).MatchString(out) {
		t.Errorf("berth status after the restart:\n%s", out)
	}
	return now
}

// podInfo is PodSandboxStatus' verbose info.
type podInfo struct {
	Namespaces   map[string]string `json:"namespaces"`
	InitPID      int               `json:"init_pid"`
	Dir          string            `json:"dir"`
	CgroupParent string            `json:"cgroup_parent"`
}

// entryNames lists a directory's entries.
func entryNames(dir string) map[string]bool {
	entries, _ := os.ReadDir(dir)
	out := map[string]bool{}
	for _, e := range entries {
		out[e.Name()] = true
	}
	return out
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkPodsConsistent checks that what is on the machine matches the pods
// the CRI lists, all of which must be ready: each has its pinned namespaces,
// its shm and its live pod init, and there is no sandbox directory, pin or
// pod init of any other pod. It returns the pods by ID.
func checkPodsConsistent(t *testing.T, d *daemon, rc runtimeapi.RuntimeServiceClient) map[string]*runtimeapi.PodSandbox {
	t.Helper()
	ctx := context.Background()
	list, err := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatalf("ListPodSandbox: %v", err)
	}
	pods := map[string]*runtimeapi.PodSandbox{}
	ids := map[string]bool{}
	inits := map[int]bool{}
	cgroups := map[string]bool{}
	mounts := mountPoints(d.dir)
	for _, p := range list.Items {
		pods[p.Id], ids[p.Id] = p, true
		if p.State != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Errorf("pod %s (%s) is %v, want ready", p.Id, p.Metadata.Name, p.State)
		}
		st, err := rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.Id, Verbose: true})
		if err != nil {
			t.Errorf("PodSandboxStatus %s: %v", p.Id, err)
			continue
		}
		var info podInfo
		if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
			t.Errorf("pod %s info %q: %v", p.Id, st.Info["info"], err)
			continue
		}
		inits[info.InitPID], cgroups[info.CgroupParent] = true, true
		for _, ns := range []string{"net", "ipc", "uts", "pid"} {
			if path := info.Namespaces[ns]; path == "" || mounts[path] != "nsfs" {
				t.Errorf("pod %s: %s namespace %q is not pinned (mounts: %v)", p.Id, ns, path, mounts[path])
			}
		}
		if shm := filepath.Join(info.Dir, "shm"); mounts[shm] != "tmpfs" {
			t.Errorf("pod %s: no shm at %s", p.Id, shm)
		}
		if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", info.InitPID)); !strings.Contains(string(cmd), "berth-pod-init\x00") && !strings.HasSuffix(string(cmd), "berth-pod-init") {
			t.Errorf("pod %s: init %d is not a live pod init: %q", p.Id, info.InitPID, cmd)
		}
	}
	for _, dir := range []string{sandboxDirs(d), pinDirs(d)} {
		if got := entryNames(dir); !sameSet(got, ids) {
			t.Errorf("%s holds %v, but the pods are %v", dir, keys(got), keys(ids))
		}
	}
	for mp := range mounts {
		for _, dir := range []string{sandboxDirs(d), pinDirs(d)} {
			if rel, err := filepath.Rel(dir, mp); err == nil && !strings.HasPrefix(rel, "..") && !ids[strings.Split(rel, "/")[0]] {
				t.Errorf("mount %s of no pod", mp)
			}
		}
	}
	for _, p := range readProcs() {
		if awaitingInit(p) {
			continue
		}
		if strings.HasPrefix(p.exe, d.dir+"/") && strings.HasSuffix(p.cmdline, " berth-pod-init") && !inits[p.pid] {
			t.Errorf("pod init %d belongs to no pod (pods' inits: %v)", p.pid, inits)
		}
	}
	hierarchies, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hierarchies {
		dir := filepath.Join("/sys/fs/cgroup", h.Name(), leakCgroupRoot(d))
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() && !cgroups[filepath.Join(leakCgroupRoot(d), e.Name())] {
				t.Errorf("cgroup %s of no pod", filepath.Join(dir, e.Name()))
			}
		}
	}
	return pods
}

// TestIntegrationHostKilledDuringRunPodSandbox kills berth serve with
// SIGKILL at points swept across a RunPodSandbox call, restarts it, and
// checks that the pod exists, ready and whole, or not at all, that its name
// is held exactly when it exists, and, once every pod is removed through the
// CRI, that nothing is left.
func TestIntegrationHostKilledDuringRunPodSandbox(t *testing.T) {
	d, rc, _ := podClients(t)
	cleanupLeaks(t, d)
	base := snapshotLeaks(t, d)
	ctx := context.Background()
	var podIDs []string

	// How long the call takes undisturbed, on a new connection as below.
	dur := medianDuration(t, d, func(rc runtimeapi.RuntimeServiceClient, i int) {
		pod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: leakPodConfig(d, fmt.Sprintf("probe-%d", i))})
		if err != nil {
			t.Fatal(err)
		}
		podIDs = append(podIDs, pod.PodSandboxId)
	})
	t.Logf("RunPodSandbox takes %v", dur)

	pluginPIDs := map[string]int{}
	for _, s := range d.plugins() {
		pluginPIDs[s.Name] = s.PID
	}
	const rounds = 12
	landed := 0
	for i := 0; i < rounds; i++ {
		// From at once to after the call would have returned.
		delay := time.Duration(i) * dur * 3 / 2 / (rounds - 1)
		name := fmt.Sprintf("crash-%d", i)
		pcfg := leakPodConfig(d, name)
		conn, err := grpcConn(d.socket)
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			id  string
			err error
		}
		done := make(chan result, 1)
		go func() {
			r, err := runtimeapi.NewRuntimeServiceClient(conn).RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
			done <- result{r.GetPodSandboxId(), err}
		}()
		time.Sleep(delay)
		killDaemon(t, d)
		res := <-done
		conn.Close()
		undone := strings.Count(d.log.String(), "recover: undoing")
		d.start()
		undone = strings.Count(d.log.String(), "recover: undoing") - undone
		pluginPIDs = checkPluginsAfterRestart(t, d, pluginPIDs)

		rc, closeRC, err := dialCRI(d.socket)
		if err != nil {
			t.Fatal(err)
		}
		pods := checkPodsConsistent(t, d, rc)
		var mine []string
		for id, p := range pods {
			if p.Metadata.Name == name {
				mine = append(mine, id)
			}
		}
		switch {
		case len(mine) > 1:
			t.Errorf("round %d: %d pods named %s: %v", i, len(mine), name, mine)
		case res.err == nil && (len(mine) != 1 || mine[0] != res.id):
			t.Errorf("round %d: RunPodSandbox returned %s before the kill, but the pods named %s are %v", i, res.id, name, mine)
		}
		// The name is held exactly when the pod exists.
		again, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
		if len(mine) == 1 {
			landed++
			if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), mine[0]) {
				t.Errorf("round %d: RunPodSandbox of the existing %s again: %v, want AlreadyExists naming %s", i, name, err, mine[0])
			}
			podIDs = append(podIDs, mine[0])
		} else {
			if err != nil {
				t.Errorf("round %d: RunPodSandbox %s after it did not land: %v", i, name, err)
			} else {
				podIDs = append(podIDs, again.PodSandboxId)
			}
		}
		t.Logf("round %d: killed after %v: call returned %v; pod landed: %v; creations undone by the restart: %d", i, delay, res.err, len(mine) == 1, undone)
		checkPodsConsistent(t, d, rc)
		closeRC()
		if t.Failed() {
			break
		}
	}
	t.Logf("%d of %d pods landed before the kill", landed, rounds)
	rc, closeRC, err := dialCRI(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRC()
	removeAllPods(ctx, t, rc)
	assertNoneLeft(t, d, rc, base, podIDs)
}

// containerSupervisor is the PID of the supervisor that the monitor plugin
// recorded for a container (0 when none).
func containerSupervisor(d *daemon, id string) int {
	b, err := os.ReadFile(filepath.Join(containerDirs(d), id, "monitor", "conmon.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// checkContainersConsistent checks that what is on the machine matches the
// containers the CRI lists, none of which may have exited or be unknown:
// each has its directory, runc state, monitor state, storage container,
// mounted root filesystem and a live supervisor, and there is none of these,
// nor any process in the pods' cgroups, of any other container. It returns
// the containers by ID.
func checkContainersConsistent(t *testing.T, d *daemon, rc runtimeapi.RuntimeServiceClient) map[string]*runtimeapi.Container {
	t.Helper()
	list, err := rc.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	cs := map[string]*runtimeapi.Container{}
	ids := map[string]bool{}
	supervisors := map[int]bool{}
	for _, c := range list.Containers {
		cs[c.Id], ids[c.Id] = c, true
		if c.State != runtimeapi.ContainerState_CONTAINER_CREATED && c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("container %s (%s) is %v", c.Id, c.Metadata.Name, c.State)
		}
		pid := containerSupervisor(d, c.Id)
		if pid == 0 || syscall.Kill(pid, 0) != nil {
			t.Errorf("container %s has no live supervisor (%d)", c.Id, pid)
		}
		supervisors[pid] = true
	}
	for _, dir := range []string{containerDirs(d), runcStateDirs(d), monitorDirs(d)} {
		if got := entryNames(dir); !sameSet(got, ids) {
			t.Errorf("%s holds %v, but the containers are %v", dir, keys(got), keys(ids))
		}
	}
	live := map[string]bool{}
	for id, removed := range storageContainers(d) {
		if !removed {
			live[id] = true
		}
	}
	if !sameSet(live, ids) {
		t.Errorf("the storage holds containers %v, but the containers are %v", keys(live), keys(ids))
	}
	rootfs := 0
	for _, typ := range mountPoints(d.dir) {
		if typ == "overlay" {
			rootfs++
		}
	}
	if rootfs != len(ids) {
		t.Errorf("%d overlay mounts for %d containers", rootfs, len(ids))
	}
	for _, p := range readProcs() {
		if awaitingInit(p) {
			continue
		}
		if strings.HasPrefix(p.exe, d.dir+"/") && strings.HasSuffix(p.cmdline, " berth-conmon") && !supervisors[p.pid] && !isSpare(p, daemonPIDs(d)) {
			t.Errorf("supervisor %d belongs to no container", p.pid)
		}
		if i := strings.Index(p.cgroup, leakCgroupRoot(d)+"/"); i >= 0 {
			line := p.cgroup[i:]
			if j := strings.IndexByte(line, '\n'); j >= 0 {
				line = line[:j]
			}
			// A container's processes are in its cgroup, the pod init
			// in the pod's.
			parts := strings.Split(line, "/")
			podInit := len(parts) == 3 && strings.HasPrefix(p.exe, d.dir+"/") && strings.HasSuffix(p.cmdline, " berth-pod-init")
			if !podInit && (len(parts) < 4 || !ids[parts[3]]) {
				t.Errorf("process %d %q is in cgroup %s, of no container", p.pid, p.cmdline, line)
			}
		}
	}
	return cs
}

// TestIntegrationHostKilledDuringCreateContainer kills berth serve with
// SIGKILL at points swept across a CreateContainer call, restarts it, and
// checks that the container exists, created and startable, or not at all,
// that its name is held exactly when it exists, that the containers started
// earlier still run, and, once the pod is removed through the CRI, that
// nothing is left.
func TestIntegrationHostKilledDuringCreateContainer(t *testing.T) {
	d, rc, image := podClients(t)
	cleanupLeaks(t, d)
	base := snapshotLeaks(t, d)
	ctx := context.Background()
	pcfg := leakPodConfig(d, "target")
	pod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatal(err)
	}
	create := func(rc runtimeapi.RuntimeServiceClient, name string) (string, error) {
		r, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
			Config: ctrConfig(name, image, "sleep 3600")})
		return r.GetContainerId(), err
	}
	startIt := func(rc runtimeapi.RuntimeServiceClient, id string) {
		t.Helper()
		if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("StartContainer %s: %v", id, err)
			return
		}
		waitState(t, rc, id, runtimeapi.ContainerState_CONTAINER_RUNNING)
	}

	// How long the call takes undisturbed, on a new connection as below.
	var probes []string
	dur := medianDuration(t, d, func(rc runtimeapi.RuntimeServiceClient, i int) {
		id, err := create(rc, fmt.Sprintf("probe-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		probes = append(probes, id)
	})
	t.Logf("CreateContainer takes %v", dur)
	for _, id := range probes {
		startIt(rc, id)
	}

	pluginPIDs := map[string]int{}
	for _, s := range d.plugins() {
		pluginPIDs[s.Name] = s.PID
	}
	const rounds = 12
	landed := 0
	for i := 0; i < rounds; i++ {
		delay := time.Duration(i) * dur * 3 / 2 / (rounds - 1)
		name := fmt.Sprintf("crash-%d", i)
		conn, err := grpcConn(d.socket)
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			id  string
			err error
		}
		done := make(chan result, 1)
		go func() {
			id, err := create(runtimeapi.NewRuntimeServiceClient(conn), name)
			done <- result{id, err}
		}()
		time.Sleep(delay)
		killDaemon(t, d)
		res := <-done
		conn.Close()
		undone := strings.Count(d.log.String(), "recover: undoing")
		d.start()
		undone = strings.Count(d.log.String(), "recover: undoing") - undone
		pluginPIDs = checkPluginsAfterRestart(t, d, pluginPIDs)

		rc, closeRC, err := dialCRI(d.socket)
		if err != nil {
			t.Fatal(err)
		}
		if pods := checkPodsConsistent(t, d, rc); len(pods) != 1 || pods[pod.PodSandboxId] == nil {
			t.Errorf("round %d: pods after the restart: %v", i, pods)
		}
		cs := checkContainersConsistent(t, d, rc)
		var mine []string
		for id, c := range cs {
			if c.Metadata.Name == name {
				mine = append(mine, id)
			} else if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
				t.Errorf("round %d: earlier container %s (%s) is %v, want running", i, id, c.Metadata.Name, c.State)
			}
		}
		switch {
		case len(mine) > 1:
			t.Errorf("round %d: %d containers named %s: %v", i, len(mine), name, mine)
		case res.err == nil && (len(mine) != 1 || mine[0] != res.id):
			t.Errorf("round %d: CreateContainer returned %s before the kill, but the containers named %s are %v", i, res.id, name, mine)
		case len(mine) == 1 && cs[mine[0]].State != runtimeapi.ContainerState_CONTAINER_CREATED:
			t.Errorf("round %d: container %s is %v, want created", i, mine[0], cs[mine[0]].State)
		}
		// The name is held exactly when the container exists, and what
		// exists can be started.
		id, err := create(rc, name)
		if len(mine) == 1 {
			landed++
			if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), mine[0]) {
				t.Errorf("round %d: CreateContainer of the existing %s again: %v, want AlreadyExists naming %s", i, name, err, mine[0])
			}
			startIt(rc, mine[0])
		} else if err != nil {
			t.Errorf("round %d: CreateContainer %s after it did not land: %v", i, name, err)
		} else {
			startIt(rc, id)
		}
		t.Logf("round %d: killed after %v: call returned %v; container landed: %v; creations undone by the restart: %d", i, delay, res.err, len(mine) == 1, undone)
		checkContainersConsistent(t, d, rc)
		closeRC()
		if t.Failed() {
			break
		}
	}
	t.Logf("%d of %d containers landed before the kill", landed, rounds)
	rc, closeRC, err := dialCRI(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRC()
	removeAllPods(ctx, t, rc)
	assertNoneLeft(t, d, rc, base, []string{pod.PodSandboxId})
}
