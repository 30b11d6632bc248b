package cgroups

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseMountinfo(t *testing.T) {
	hybrid := `25 30 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
32 25 0:30 / /sys/fs/cgroup/pids rw,nosuid shared:16 - cgroup cgroup rw,pids
33 25 0:31 / /sys/fs/cgroup/cpuset rw,nosuid shared:17 - cgroup cgroup rw,cpuset,clone_children
`
	h := parseMountinfo([]byte(hybrid))
	if h.Unified != "" {
		t.Errorf("hybrid layout: Unified = %q, want v1", h.Unified)
	}
	for ctl, want := range map[string]string{"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct", "memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids", "cpuset": "/sys/fs/cgroup/cpuset"} {
		if h.V1[ctl] != want {
			t.Errorf("V1[%s] = %q, want %q", ctl, h.V1[ctl], want)
		}
	}
	if _, ok := h.V1["name=systemd"]; ok || len(h.V1) != 5 {
		t.Errorf("V1 = %v", h.V1)
	}
	v2 := parseMountinfo([]byte("26 25 0:24 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"))
	if v2.Unified != "/sys/fs/cgroup" || v2.Dir("memory", "/a/b") != "/sys/fs/cgroup/a/b" {
		t.Errorf("v2: %+v", v2)
	}
}

func TestExpandSlice(t *testing.T) {
	for in, want := range map[string]string{
		"kubepods-burstable-pod1.slice": "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice",
		"kubepods.slice":                "/kubepods.slice",
		"-.slice":                       "/",
		"/kubepods/burstable/pod1":      "/kubepods/burstable/pod1",
		"/berth/../berth/pod-1":         "/berth/pod-1",
	} {
		got, err := ExpandSlice(in)
		if err != nil || got != want {
			t.Errorf("ExpandSlice(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"relative/path", "a--b.slice", "-a.slice", ""} {
		if got, err := ExpandSlice(bad); err == nil {
			t.Errorf("ExpandSlice(%q) = %q, want an error", bad, got)
		}
	}
}

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 0, 2: 1, 1024: 39, 262144: 10000, 1 << 20: 10000} {
		if got := SharesToWeight(shares); got != want {
			t.Errorf("SharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadStatsV1(t *testing.T) {
	root := t.TempDir()
	h := &Hierarchy{V1: map[string]string{"cpu": root + "/cpu", "cpuacct": root + "/cpuacct", "memory": root + "/memory", "pids": root + "/pids", "blkio": root + "/blkio"}}
	writeFiles(t, root, map[string]string{
		"cpuacct/pod/cpuacct.usage":                           "5000000000\n",
		"cpuacct/pod/cpuacct.stat":                            "user 300\nsystem 100\n",
		"cpu/pod/cpu.stat":                                    "nr_periods 10\nnr_throttled 2\nthrottled_time 7000\n",
		"memory/pod/memory.usage_in_bytes":                    "1000000\n",
		"memory/pod/memory.max_usage_in_bytes":                "2000000\n",
		"memory/pod/memory.failcnt":                           "3\n",
		"memory/pod/memory.limit_in_bytes":                    "9223372036854771712\n",
		"memory/pod/memory.memsw.usage_in_bytes":              "1500000\n",
		"memory/pod/memory.stat":                              "cache 1\ntotal_cache 400000\ntotal_rss 500000\ntotal_mapped_file 1000\ntotal_inactive_file 300000\ntotal_pgfault 77\ntotal_pgmajfault 7\n",
		"memory/pod/memory.oom_control":                       "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		"pids/pod/pids.current":                               "4\n",
		"pids/pod/pids.max":                                   "max\n",
		"memory/pod/memory.kmem.usage_in_bytes":               "65536\n",
		"blkio/pod/blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\nTotal 12288\n",
		"blkio/pod/blkio.throttle.io_serviced_recursive":      "8:0 Read 2\n8:0 Write 3\nTotal 5\n",
	})
	s, err := h.ReadStats("/pod")
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{CPUTotalNanos: 5e9, CPUUserNanos: 3e9, CPUSystemNanos: 1e9, CPUPeriods: 10, CPUThrottledPeriods: 2, CPUThrottledNanos: 7000,
		MemoryUsage: 1000000, MemoryWorkingSet: 700000, MemoryRSS: 500000, MemoryCache: 400000, MemoryMappedFile: 1000, MemorySwap: 500000,
		MemoryMaxUsage: 2000000, MemoryFailcnt: 3, PageFaults: 77, MajorPageFaults: 7, OOMEvents: 2, Pids: 4, MemoryKernel: 65536,
		Blkio: []Blkio{{Major: 8, Minor: 0, Name: deviceName(8, 0), ReadBytes: 4096, WriteBytes: 8192, Reads: 2, Writes: 3}}}
	if !reflect.DeepEqual(*s, want) {
		t.Errorf("stats:\n got %+v\nwant %+v", *s, want)
	}
	if _, err := h.ReadStats("/missing"); err == nil || !strings.Contains(err.Error(), ErrNotFound.Error()) {
		t.Errorf("missing cgroup: %v", err)
	}
}

func TestReadStatsV2(t *testing.T) {
	root := t.TempDir()
	h := &Hierarchy{Unified: root}
	writeFiles(t, root, map[string]string{
		"pod/cpu.stat":            "usage_usec 5000\nuser_usec 3000\nsystem_usec 2000\nnr_periods 4\nnr_throttled 1\nthrottled_usec 9\n",
		"pod/memory.current":      "1000000\n",
		"pod/memory.peak":         "1200000\n",
		"pod/memory.max":          "4194304\n",
		"pod/memory.swap.current": "0\n",
		"pod/memory.events":       "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n",
		"pod/memory.stat":         "anon 600000\nfile 300000\nfile_mapped 2000\ninactive_file 100000\npgfault 50\npgmajfault 5\n",
		"pod/pids.current":        "3\n",
		"pod/pids.max":            "100\n",
		"pod/io.stat":             "259:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n",
	})
	s, err := h.ReadStats("/pod")
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{CPUTotalNanos: 5e6, CPUUserNanos: 3e6, CPUSystemNanos: 2e6, CPUPeriods: 4, CPUThrottledPeriods: 1, CPUThrottledNanos: 9000,
		MemoryUsage: 1000000, MemoryWorkingSet: 900000, MemoryRSS: 600000, MemoryCache: 300000, MemoryMappedFile: 2000,
		MemoryMaxUsage: 1200000, MemoryFailcnt: 5, MemoryLimit: 4194304, PageFaults: 50, MajorPageFaults: 5, OOMEvents: 1, Pids: 3, PidsLimit: 100,
		Blkio: []Blkio{{Major: 259, Minor: 0, Name: deviceName(259, 0), ReadBytes: 100, WriteBytes: 200, Reads: 1, Writes: 2}}}
	if !reflect.DeepEqual(*s, want) {
		t.Errorf("stats:\n got %+v\nwant %+v", *s, want)
	}
}

func TestSetV2Files(t *testing.T) {
	root := t.TempDir()
	h := &Hierarchy{Unified: root}
	if err := h.Set("/a/b", Resources{CPUShares: 1024, CPUQuota: 50000, MemoryLimit: -1, PidsLimit: 64}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"cpu.weight": "39", "cpu.max": "50000 100000", "memory.max": "max", "pids.max": "64"} {
		b, err := os.ReadFile(filepath.Join(root, "a/b", file))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", file, b, err, want)
		}
	}
}

// TestIntegrationRealCgroup sets limits on a real cgroup of its own, moves a
// process into it and reads its usage back.
func TestIntegrationRealCgroup(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root and a real cgroup hierarchy")
	}
	h, err := Detect()
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/berth-cgtest-%d", os.Getpid())
	// The shell allocates and burns CPU once it is in the cgroup (v1 does
	// not move charges with a process).
	cmd := exec.Command("sh", "-c", `sleep 0.2; x=$(head -c 2000000 /dev/zero | tr '\0' a); exec sleep 60`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		// Anything the shell left (it execs its last command, so nothing
		// should be) is ours to end.
		if d := h.Dir("pids", path); d != "" {
			if b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
				for _, f := range strings.Fields(string(b)) {
					var pid int
					if _, err := fmt.Sscan(f, &pid); err == nil && pid > 0 {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
		}
		for _, ctl := range []string{"cpu", "cpuacct", "memory", "pids", "cpuset", "blkio", "devices", "freezer"} {
			if d := h.Dir(ctl, path); d != "" {
				for i := 0; i < 50 && os.Remove(d) != nil && fileExists(d); i++ {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
	})
	if err := h.Set(path, Resources{CPUShares: 512, MemoryLimit: 64 << 20, PidsLimit: 32}); err != nil {
		t.Fatal(err)
	}
	if err := h.Join(path, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	var s *Stats
	for i := 0; i < 100; i++ {
		if s, err = h.ReadStats(path); err != nil {
			t.Fatal(err)
		}
		if s.MemoryUsage > 0 && s.CPUTotalNanos > 0 && s.Pids == 1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s.Pids != 1 || s.PidsLimit != 32 || s.MemoryLimit != 64<<20 || s.MemoryUsage == 0 || s.CPUTotalNanos == 0 {
		t.Errorf("stats of a cgroup holding one sleep: %+v", s)
	}
	if p, err := ForPID(cmd.Process.Pid); err != nil || p != path {
		t.Errorf("ForPID = %q, %v; want %q", p, err, path)
	}
	h.ReadProcesses(path, s)
	if s.Threads != 1 || s.FileDescriptors < 3 {
		t.Errorf("processes of a cgroup holding one sleep: %d threads, %d fds", s.Threads, s.FileDescriptors)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
