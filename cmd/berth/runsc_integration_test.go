package main

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The runsc runtime class (plugins.toml): each pod is one gVisor sandbox
// whose root container is Berth's pod init, and the pod's containers join
// it. These tests run the real runsc (Debian's 0.0~20221219 in CI).

const runscBinary = "/usr/bin/runsc"

func needRunsc(t *testing.T) {
	t.Helper()
	needRoot(t)
	if _, err := os.Stat(runscBinary); err != nil {
		t.Skipf("%s is missing (apt-get install runsc)", runscBinary)
	}
}

// runscCgroupRoot is where this test's gVisor pods put their cgroups (in
// every hierarchy), unique to the test process and daemon, so that the leak
// check looks at nothing of other tests.
func runscCgroupRoot(d *daemon) string {
	return fmt.Sprintf("/berth-runsctest-%d-%08x", os.Getpid(), crc32.ChecksumIEEE([]byte(d.dir)))
}

// runscProcs lists the processes working for this daemon's pods: runsc
// (sandboxes, gofers, commands), gVisor keepers, container supervisors.
// They are found by the daemon's directory in their command line (runsc's
// --root, the daemon's binaries), skipping the daemon and its plugins.
func runscProcs(d *daemon) map[int]string {
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || (d.cmd != nil && d.cmd.Process != nil && pid == d.cmd.Process.Pid) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), d.dir) {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(argv) == 1 && strings.HasPrefix(argv[0], d.dir) {
			continue // a plugin (started without arguments)
		}
		if comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); strings.TrimSpace(string(comm)) == "berth-spare" {
			continue // the monitor's spare supervisor: the daemon's, no pod's
		}
		out[pid] = strings.Join(argv, " ")
	}
	return out
}

// runscCleanup undoes what a failed test left: processes of this daemon's
// pods (SIGKILL by PID), mounts under the daemon's directory, and the
// test's cgroups.
func runscCleanup(t *testing.T, d *daemon) {
	for pid, cmd := range runscProcs(d) {
		t.Logf("cleanup: killing %d %.120s", pid, cmd)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], d.dir) {
				_ = syscall.Unmount(f[4], syscall.MNT_DETACH)
			}
		}
	}
	root := runscCgroupRoot(d)
	hier, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hier {
		// Leaves first: containers, then pods, then the root.
		for _, pattern := range []string{"*/*", "*", ""} {
			dirs, _ := filepath.Glob(filepath.Join(h, root, pattern))
			for _, dir := range dirs {
				if st, err := os.Stat(dir); err == nil && st.IsDir() {
					_ = os.Remove(dir)
				}
			}
		}
	}
}

func runscPodConfig(d *daemon, name string) *runtimeapi.PodSandboxConfig {
	c := podConfig(d, name)
	c.Linux.CgroupParent = runscCgroupRoot(d) + "/pod-" + name
	return c
}

func TestIntegrationRunscPod(t *testing.T) {
	needRunsc(t)
	d, rc, image := podClients(t)
	t.Cleanup(func() { runscCleanup(t, d) })
	ctx := context.Background()
	pcfg := runscPodConfig(d, "gvisor")

	// RunPodSandbox, CreateContainer, StartContainer of a pod's first
	// container, timed.
	t0 := time.Now()
	pod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg, RuntimeHandler: "runsc"})
	if err != nil {
		t.Fatal(err)
	}
	tRun := time.Since(t0)
	podID := pod.PodSandboxId
	create := func(cfg *runtimeapi.ContainerConfig) string {
		t.Helper()
		c, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pcfg, Config: cfg})
		if err != nil {
			t.Fatalf("CreateContainer %s: %v", cfg.Metadata.Name, err)
		}
		return c.ContainerId
	}
	startC := func(id string) {
		t.Helper()
		if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("StartContainer %s: %v", id, err)
		}
	}
	// The first container writes to both streams, prints the kernel and
	// hostname it sees, and exits 3.
	t1 := time.Now()
	c1 := create(ctrConfig("hello", image, "echo out; echo err >&2; hostname; head -n1 /proc/version; sleep 0.2; exit 3"))
	tCreate := time.Since(t1)
	t2 := time.Now()
	startC(c1)
	tStart := time.Since(t2)
	t.Logf("runsc: RunPodSandbox %v, CreateContainer %v, StartContainer %v, total %v",
		tRun.Round(time.Millisecond), tCreate.Round(time.Millisecond), tStart.Round(time.Millisecond), (tRun + tCreate + tStart).Round(time.Millisecond))

	ps, err := rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil || ps.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || ps.Status.RuntimeHandler != "runsc" {
		t.Fatalf("PodSandboxStatus = %v, %v", ps, err)
	}
	// The sandbox (the runsc-sandbox process, the pod's "init" here) runs
	// in the pod's cgroup, not in the plugin's.
	var info struct {
		InitPID int `json:"init_pid"`
	}
	_ = json.Unmarshal([]byte(ps.Info["info"]), &info)
	if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", info.InitPID)); !strings.HasPrefix(string(cmd), "runsc-sandbox") {
		t.Errorf("init_pid %d is not the gVisor sandbox: %q", info.InitPID, cmd)
	} else if cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", info.InitPID)); !strings.Contains(string(cg), ":memory:"+pcfg.Linux.CgroupParent+"/"+podID) {
		t.Errorf("the sandbox is not in the pod's cgroup %s/%s:\n%s", pcfg.Linux.CgroupParent, podID, cg)
	}

	st := waitState(t, rc, c1, runtimeapi.ContainerState_CONTAINER_EXITED)
	if st.ExitCode != 3 || st.Reason != "Error" || st.FinishedAt <= st.StartedAt {
		t.Errorf("exited container: %+v", st)
	}
	logb, err := os.ReadFile(st.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\S+Z (stdout|stderr) F (.*)$`)
	var lines []string
	for _, m := range re.FindAllStringSubmatch(string(logb), -1) {
		lines = append(lines, m[1]+":"+m[2])
	}
	joined := strings.Join(lines, ",")
	// gVisor's kernel says it is Linux 4.4.0; the hostname is the pod's.
	for _, want := range []string{"stdout:out", "stderr:err", "stdout:gvisor", "stdout:Linux version 4.4.0"} {
		if !strings.Contains(joined, want) {
			t.Errorf("log of the first container %q lacks %q", logb, want)
		}
	}

	// The first container's exit did not stop the pod: a second one runs.
	// It ignores SIGTERM (the stop test below).
	c2 := create(ctrConfig("sleeper", image, "trap '' TERM; echo ready; exec sleep 300"))
	startC(c2)
	waitState(t, rc, c2, runtimeapi.ContainerState_CONTAINER_RUNNING)

	// ExecSync: output, exit code; the pod shares one PID namespace whose
	// PID 1 is Berth's pod init.
	res, err := rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: c2, Cmd: []string{"sh", "-c", "echo hi; echo there >&2; exit 7"}, Timeout: 10})
	if err != nil || string(res.Stdout) != "hi\n" || string(res.Stderr) != "there\n" || res.ExitCode != 7 {
		t.Errorf("ExecSync = %+v, %v", res, err)
	}
	res, err = rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: c2, Cmd: []string{"ps", "-o", "pid,comm"}, Timeout: 10})
	if err != nil || !regexp.MustCompile(`(?m)^\s*1 berth-pod-init$`).Match(res.GetStdout()) || strings.Count(string(res.GetStdout()), "sleep") != 1 {
		t.Errorf("ps in the pod:\n%s %v", res.GetStdout(), err)
	}
	// A command past its timeout is killed with what it started.
	start := time.Now()
	_, err = rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: c2, Cmd: []string{"sh", "-c", "sleep 100; true"}, Timeout: 1})
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > 6*time.Second {
		t.Errorf("ExecSync past its timeout: %v after %v", err, time.Since(start))
	}
	res, err = rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: c2, Cmd: []string{"ps", "-o", "pid,comm"}, Timeout: 10})
	if err != nil || strings.Count(string(res.GetStdout()), "sleep") != 1 {
		t.Errorf("the timed-out command left processes:\n%s %v", res.GetStdout(), err)
	}

	// A third container shares the pod's network (loopback): it receives
	// one line from the second and exits 0.
	c3 := create(ctrConfig("listener", image, "busybox nc -l -p 8080"))
	startC(c3)
	waitState(t, rc, c3, runtimeapi.ContainerState_CONTAINER_RUNNING)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err = rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: c2, Cmd: []string{"sh", "-c", "echo ping-from-sleeper | busybox nc 127.0.0.1 8080"}, Timeout: 5})
		if err == nil && res.ExitCode == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nc to the listener: %+v %v", res, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st3 := waitState(t, rc, c3, runtimeapi.ContainerState_CONTAINER_EXITED)
	if l, _ := os.ReadFile(st3.LogPath); st3.ExitCode != 0 || !strings.Contains(string(l), "stdout F ping-from-sleeper") {
		t.Errorf("listener: exit %d, log %q", st3.ExitCode, l)
	}

	// Stats: CPU per container; runsc accounts memory per sandbox only,
	// so none per container.
	stats, err := rc.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: c2})
	if err != nil || stats.Stats.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || stats.Stats.GetMemory().GetWorkingSetBytes().GetValue() != 0 {
		t.Errorf("ContainerStats = %v, %v", stats, err)
	}
	// The pod's own figures are its cgroup's, where the sandbox runs.
	pst, err := rc.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
	if err != nil || pst.Stats.GetLinux().GetMemory().GetWorkingSetBytes().GetValue() < 1<<20 || pst.Stats.GetLinux().GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 {
		t.Errorf("PodSandboxStats = %v, %v", pst, err)
	}
	// What gVisor cannot do is refused, naming the reason.
	if _, err := rc.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: c2,
		Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}}); status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "runsc") {
		t.Errorf("UpdateContainerResources: %v, want Unimplemented naming runsc", err)
	}
	hostPID := ctrConfig("hostpid", image, "true")
	hostPID.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE}}
	if _, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pcfg, Config: hostPID}); status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "PID namespace") {
		t.Errorf("host PID container: %v, want Unimplemented", err)
	}
	hostIPC := runscPodConfig(d, "hostipc")
	hostIPC.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE}}
	if _, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: hostIPC, RuntimeHandler: "runsc"}); status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "IPC") {
		t.Errorf("host IPC pod: %v, want Unimplemented", err)
	}

	// A pod on the node's network: the sandbox uses the node's stack, and
	// its containers the node's hostname.
	hostNet := runscPodConfig(d, "hostnet")
	hostNet.Hostname = ""
	hostNet.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
	th := time.Now()
	hpod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: hostNet, RuntimeHandler: "runsc"})
	if err != nil {
		t.Fatalf("host network pod: %v", err)
	}
	hcfg := ctrConfig("node-name", image, "hostname")
	hcfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
	hc, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: hpod.PodSandboxId, SandboxConfig: hostNet, Config: hcfg})
	if err != nil {
		t.Fatal(err)
	}
	startC(hc.ContainerId)
	node, _ := os.Hostname()
	if st := waitState(t, rc, hc.ContainerId, runtimeapi.ContainerState_CONTAINER_EXITED); st.ExitCode != 0 {
		t.Errorf("host network container: %+v", st)
	} else if l, _ := os.ReadFile(st.LogPath); !strings.Contains(string(l), "stdout F "+node+"\n") {
		t.Errorf("host network container's hostname: %q, want %q", l, node)
	}
	tUp := time.Since(th)
	th = time.Now()
	if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: hpod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	t.Logf("runsc, node network: RunPodSandbox to the container's exit %v, RemovePodSandbox %v", tUp.Round(time.Millisecond), time.Since(th).Round(time.Millisecond))

	// StopContainer: SIGTERM is ignored, SIGKILL after the timeout.
	start = time.Now()
	if _, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c2, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("StopContainer with a 1s timeout took %v", took)
	}
	if st := waitState(t, rc, c2, runtimeapi.ContainerState_CONTAINER_EXITED); st.ExitCode != 137 {
		t.Errorf("killed container exit code %d, want 137", st.ExitCode)
	}
	if _, err := rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c1}); err != nil {
		t.Fatal(err)
	}
	// A container created and never started is removed with the pod.
	create(ctrConfig("never", image, "true"))

	var tStop, tRemove time.Duration
	for i := 0; i < 2; i++ {
		t0 := time.Now()
		if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			tStop = time.Since(t0)
		}
	}
	for i := 0; i < 2; i++ {
		t0 := time.Now()
		if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			tRemove = time.Since(t0)
		}
	}
	t.Logf("runsc: StopPodSandbox %v, RemovePodSandbox (three containers) %v", tStop.Round(time.Millisecond), tRemove.Round(time.Millisecond))
	runscAssertClean(t, d, podID)
}

// runscAssertClean checks that nothing of the daemon's gVisor pods is left:
// processes, mounts, runsc state, keeper sockets, pod directories, cgroups.
func runscAssertClean(t *testing.T, d *daemon, podID string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		procs := runscProcs(d)
		if len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for pid, cmd := range procs {
				t.Errorf("process left behind: %d %.200s", pid, cmd)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The storage plugin keeps its home mounted while it runs; nothing
	// else may stay mounted (pinned namespaces, /dev/shm, root filesystems).
	storageHome := filepath.Join(d.root, "plugins/overlay/storage/overlay")
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], d.dir) && f[4] != storageHome {
				t.Errorf("mount left behind: %s", l)
			}
		}
	}
	run := filepath.Join(d.runroot, "plugins/run/runc")
	for _, dir := range []string{filepath.Join(run, "state/runsc"), filepath.Join(run, "gvisor"), filepath.Join(run, "sandboxes"),
		filepath.Join(d.runroot, "sandboxes"), filepath.Join(d.runroot, "containers")} {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("%s not empty: %v", dir, names)
		}
	}
	hier, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hier {
		root := filepath.Join(h, runscCgroupRoot(d))
		_ = filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() && path != root {
				t.Errorf("cgroup left behind: %s", path)
			}
			return nil
		})
		if _, err := os.Stat(filepath.Join(h, "berth", "pod-"+podID[:12])); err == nil {
			t.Errorf("cgroup left behind: %s", filepath.Join(h, "berth", "pod-"+podID[:12]))
		}
	}
}

// TestIntegrationRunscHostCrash: kill -9 of berth with a gVisor pod
// running and another caught half-way through creation (its record
// rewound to "creating", without the runtime's handle). After a restart
// the container still runs and its exit is recorded; the half-created pod's
// sandbox is found from what the plugin left on disk and removed.
func TestIntegrationRunscHostCrash(t *testing.T) {
	needRunsc(t)
	d, rc, image := podClients(t)
	t.Cleanup(func() { runscCleanup(t, d) })
	ctx := context.Background()
	pcfg := runscPodConfig(d, "survivor")
	pod, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg, RuntimeHandler: "runsc"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: ctrConfig("worker", image, "while [ ! -e /tmp/stop ]; do sleep 0.1; done; echo bye; exit 42")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	half, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: runscPodConfig(d, "half"), RuntimeHandler: "runsc"})
	if err != nil {
		t.Fatal(err)
	}
	killAndRewindPod(t, d, half.PodSandboxId)

	d.start()
	waitState(t, rc, c.ContainerId, runtimeapi.ContainerState_CONTAINER_RUNNING)
	if _, err := rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: half.PodSandboxId}); err == nil {
		t.Errorf("half-created pod still known after recovery")
	}
	for pid, cmd := range runscProcs(d) {
		if strings.Contains(cmd, half.PodSandboxId) {
			t.Errorf("the half-created pod's sandbox still runs: %d %.200s", pid, cmd)
		}
	}
	if _, err := rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: c.ContainerId, Cmd: []string{"touch", "/tmp/stop"}, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, rc, c.ContainerId, runtimeapi.ContainerState_CONTAINER_EXITED)
	if l, _ := os.ReadFile(st.LogPath); st.ExitCode != 42 || !strings.Contains(string(l), "stdout F bye") {
		t.Errorf("exit after restart: %d, log %q", st.ExitCode, l)
	}
	if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	runscAssertClean(t, d, pod.PodSandboxId)
}

// TestIntegrationRunscOwnNetworkStack: without --network=host Debian's
// runsc (0.0~20221219) cannot start gVisor's own network stack in a pod's
// network namespace on this kernel (gVisor issue 10704). RunPodSandbox
// says so and how to fix it, and leaves nothing behind.
func TestIntegrationRunscOwnNetworkStack(t *testing.T) {
	needRunsc(t)
	b, err := os.ReadFile("../../plugins.toml")
	if err != nil {
		t.Fatal(err)
	}
	const flag = `runtime_args = ["--network=host"]`
	if !strings.Contains(string(b), flag) {
		t.Fatalf("plugins.toml has no %s", flag)
	}
	cfg := filepath.Join(t.TempDir(), "plugins.toml")
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), flag, `runtime_args = ["--network=sandbox"]`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemonWith(t, cfg)
	t.Cleanup(func() { runscCleanup(t, d) })
	rc, done, err := dialCRI(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	pod, err := rc.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: runscPodConfig(d, "netstack"), RuntimeHandler: "runsc"})
	if err == nil {
		_, _ = rc.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		t.Skip("this runsc runs its own network stack in a pod's network namespace")
	}
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), flag) {
		t.Errorf("RunPodSandbox: %v, want FailedPrecondition naming --network=host", err)
	}
	runscAssertClean(t, d, strings.Repeat("0", 12))
}
