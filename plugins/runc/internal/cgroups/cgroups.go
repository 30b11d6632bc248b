// Package cgroups reads and sets the resources of a pod's cgroup parent on
// cgroup v1 (including the hybrid layout, with each controller mounted on its
// own or co-mounted as "cpu,cpuacct"), and on cgroup v2. Containers' own
// cgroups are the OCI runtime's business; the pod's parent is the runtime
// plugin's: it holds the pod's processes and every container's cgroup, so its
// counters are the pod's.
package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Hierarchy is where cgroup controllers are mounted.
type Hierarchy struct {
	// Unified is the cgroup v2 mount when the host is v2-only, else "".
	Unified string
	// V1 maps a v1 controller (cpu, cpuacct, memory, pids, cpuset, ...) to
	// its mount point.
	V1 map[string]string
}

var v1Controllers = map[string]bool{"cpu": true, "cpuacct": true, "cpuset": true, "memory": true, "pids": true, "blkio": true,
	"devices": true, "freezer": true, "hugetlb": true, "net_cls": true, "net_prio": true, "perf_event": true, "rdma": true, "misc": true}

// Detect reads the cgroup mounts of the calling process from mountinfo.
func Detect() (*Hierarchy, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return parseMountinfo(b), nil
}

func parseMountinfo(b []byte) *Hierarchy {
	h := &Hierarchy{V1: map[string]string{}}
	var unified string
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		switch g[0] {
		case "cgroup2":
			unified = f[4]
		case "cgroup":
			for _, opt := range strings.Split(g[2], ",") {
				if v1Controllers[opt] {
					h.V1[opt] = f[4]
				}
			}
		}
	}
	if len(h.V1) == 0 {
		h.Unified = unified
	}
	return h
}

// ExpandSlice turns a systemd slice name into its path in the hierarchy, as
// systemd nests it: "kubepods-burstable-pod1.slice" →
// "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice".
// A cgroupfs path is returned as is.
func ExpandSlice(parent string) (string, error) {
	if !strings.HasSuffix(parent, ".slice") || strings.Contains(parent, "/") {
		if !filepath.IsAbs(parent) {
			return "", fmt.Errorf("cgroup parent %q is neither an absolute path nor a systemd slice", parent)
		}
		return filepath.Clean(parent), nil
	}
	name := strings.TrimSuffix(parent, ".slice")
	if name == "" || name == "-" {
		return "/", nil
	}
	if strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") || strings.Contains(name, "--") {
		return "", fmt.Errorf("invalid systemd slice %q", parent)
	}
	path, prefix := "", ""
	for _, part := range strings.Split(name, "-") {
		prefix += part
		path += "/" + prefix + ".slice"
		prefix += "-"
	}
	return path, nil
}

// Dir is where controller ctl of cgroup path lives ("" when the controller
// is not mounted).
func (h *Hierarchy) Dir(ctl, path string) string {
	if h.Unified != "" {
		return filepath.Join(h.Unified, path)
	}
	if m, ok := h.V1[ctl]; ok {
		return filepath.Join(m, path)
	}
	return ""
}

func readUint(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, true
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

// readKV reads a flat keyed file ("key value" per line).
func readKV(path string) map[string]uint64 {
	out := map[string]uint64{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// Stats is a cgroup's usage.
type Stats struct {
	CPUTotalNanos, CPUUserNanos, CPUSystemNanos        uint64
	CPUPeriods, CPUThrottledPeriods, CPUThrottledNanos uint64
	MemoryUsage, MemoryWorkingSet, MemoryRSS           uint64
	MemoryCache, MemoryMappedFile, MemorySwap          uint64
	MemoryMaxUsage, MemoryFailcnt, MemoryLimit         uint64
	PageFaults, MajorPageFaults, OOMEvents             uint64
	Pids, PidsLimit                                    uint64
	MemoryKernel                                       uint64
	// Over the cgroup's processes (ReadProcesses).
	FileDescriptors, Sockets, Threads uint64
	Blkio                             []Blkio
}

// Blkio is one block device's I/O by a cgroup.
type Blkio struct {
	Major, Minor                         uint32
	Name                                 string
	ReadBytes, WriteBytes, Reads, Writes uint64
}

// v1 memory.limit_in_bytes reads as this (rounded to the page size) when
// there is no limit.
const v1Unlimited = uint64(1) << 62

// userHZ is the unit of cpuacct.stat (USER_HZ is 100 on every Linux ABI
// Berth runs on).
const userHZ = 100

// ErrNotFound is returned when the cgroup does not exist.
var ErrNotFound = errors.New("cgroup not found")

// ReadStats reads the usage of cgroup path (a path in the hierarchy, as
// ExpandSlice returns).
func (h *Hierarchy) ReadStats(path string) (*Stats, error) {
	if h.Unified != "" {
		return h.readV2(filepath.Join(h.Unified, path))
	}
	return h.readV1(path)
}

func (h *Hierarchy) readV1(path string) (*Stats, error) {
	s := &Stats{}
	mem := h.Dir("memory", path)
	if _, err := os.Stat(mem); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", mem, ErrNotFound)
		}
		return nil, fmt.Errorf("stat %s: %w", mem, err)
	}
	if d := h.Dir("cpuacct", path); d != "" {
		s.CPUTotalNanos, _ = readUint(filepath.Join(d, "cpuacct.usage"))
		st := readKV(filepath.Join(d, "cpuacct.stat"))
		s.CPUUserNanos, s.CPUSystemNanos = st["user"]*(1e9/userHZ), st["system"]*(1e9/userHZ)
	}
	if d := h.Dir("cpu", path); d != "" {
		st := readKV(filepath.Join(d, "cpu.stat"))
		s.CPUPeriods, s.CPUThrottledPeriods, s.CPUThrottledNanos = st["nr_periods"], st["nr_throttled"], st["throttled_time"]
	}
	s.MemoryUsage, _ = readUint(filepath.Join(mem, "memory.usage_in_bytes"))
	s.MemoryKernel, _ = readUint(filepath.Join(mem, "memory.kmem.usage_in_bytes"))
	s.MemoryMaxUsage, _ = readUint(filepath.Join(mem, "memory.max_usage_in_bytes"))
	s.MemoryFailcnt, _ = readUint(filepath.Join(mem, "memory.failcnt"))
	if l, ok := readUint(filepath.Join(mem, "memory.limit_in_bytes")); ok && l < v1Unlimited {
		s.MemoryLimit = l
	}
	if sw, ok := readUint(filepath.Join(mem, "memory.memsw.usage_in_bytes")); ok && sw > s.MemoryUsage {
		s.MemorySwap = sw - s.MemoryUsage
	}
	st := readKV(filepath.Join(mem, "memory.stat"))
	s.MemoryRSS, s.MemoryCache, s.MemoryMappedFile = st["total_rss"], st["total_cache"], st["total_mapped_file"]
	s.PageFaults, s.MajorPageFaults = st["total_pgfault"], st["total_pgmajfault"]
	s.MemoryWorkingSet = sub(s.MemoryUsage, st["total_inactive_file"])
	if b, err := os.ReadFile(filepath.Join(mem, "memory.oom_control")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
				s.OOMEvents, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	if d := h.Dir("pids", path); d != "" {
		s.Pids, _ = readUint(filepath.Join(d, "pids.current"))
		s.PidsLimit, _ = readUint(filepath.Join(d, "pids.max"))
	}
	if d := h.Dir("blkio", path); d != "" {
		s.Blkio = readBlkioV1(d)
	}
	return s, nil
}

// readBlkioV1 reads the throttle counters (they count I/O on every
// scheduler, unlike the CFQ ones).
func readBlkioV1(dir string) []Blkio {
	devs := map[[2]uint32]*Blkio{}
	var order [][2]uint32
	for _, f := range []struct {
		file  string
		bytes bool
	}{{"blkio.throttle.io_service_bytes_recursive", true}, {"blkio.throttle.io_serviced_recursive", false}} {
		b, err := os.ReadFile(filepath.Join(dir, f.file))
		if err != nil {
			b, _ = os.ReadFile(filepath.Join(dir, strings.TrimSuffix(f.file, "_recursive")))
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line) // "8:0 Read 4096"
			if len(fs) != 3 {
				continue
			}
			var maj, min uint32
			if _, err := fmt.Sscanf(fs[0], "%d:%d", &maj, &min); err != nil {
				continue
			}
			v, err := strconv.ParseUint(fs[2], 10, 64)
			if err != nil {
				continue
			}
			k := [2]uint32{maj, min}
			d := devs[k]
			if d == nil {
				d = &Blkio{Major: maj, Minor: min, Name: deviceName(maj, min)}
				devs[k] = d
				order = append(order, k)
			}
			switch {
			case fs[1] == "Read" && f.bytes:
				d.ReadBytes = v
			case fs[1] == "Write" && f.bytes:
				d.WriteBytes = v
			case fs[1] == "Read":
				d.Reads = v
			case fs[1] == "Write":
				d.Writes = v
			}
		}
	}
	out := make([]Blkio, 0, len(order))
	for _, k := range order {
		out = append(out, *devs[k])
	}
	return out
}

// readIOV2 reads cgroup v2's io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...").
func readIOV2(dir string) []Blkio {
	b, _ := os.ReadFile(filepath.Join(dir, "io.stat"))
	var out []Blkio
	for _, line := range strings.Split(string(b), "\n") {
		fs := strings.Fields(line)
		if len(fs) < 2 {
			continue
		}
		var d Blkio
		if _, err := fmt.Sscanf(fs[0], "%d:%d", &d.Major, &d.Minor); err != nil {
			continue
		}
		d.Name = deviceName(d.Major, d.Minor)
		for _, kv := range fs[1:] {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseUint(v, 10, 64)
			switch k {
			case "rbytes":
				d.ReadBytes = n
			case "wbytes":
				d.WriteBytes = n
			case "rios":
				d.Reads = n
			case "wios":
				d.Writes = n
			}
		}
		out = append(out, d)
	}
	return out
}

// deviceName is a block device's kernel name ("vda"), "" when unknown.
func deviceName(major, minor uint32) string {
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", major, minor))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "DEVNAME="); ok {
			return v
		}
	}
	return ""
}

// ForPID is the cgroup path (in the hierarchy, as ReadStats takes it) of
// process pid: its unified path on cgroup v2, its memory controller's on v1.
func ForPID(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", fmt.Errorf("cgroup of %d: %w", pid, err)
	}
	unified := ""
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			unified = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				return parts[2], nil
			}
		}
	}
	if unified == "" {
		return "", fmt.Errorf("cgroup of %d: no memory or unified hierarchy in %q", pid, b)
	}
	return unified, nil
}

// ReadProcesses adds to s what the cgroup's processes hold: open file
// descriptors, sockets among them, and threads.
func (h *Hierarchy) ReadProcesses(path string, s *Stats) {
	d := h.Dir("pids", path)
	if d == "" {
		d = h.Dir("memory", path)
	}
	b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		proc := filepath.Join("/proc", f)
		fds, _ := os.ReadDir(filepath.Join(proc, "fd"))
		s.FileDescriptors += uint64(len(fds))
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(proc, "fd", fd.Name())); err == nil && strings.HasPrefix(l, "socket:") {
				s.Sockets++
			}
		}
		st := readKVColon(filepath.Join(proc, "status"))
		s.Threads += st["Threads"]
	}
}

// readKVColon reads a "Key:  value" file such as /proc/PID/status.
func readKVColon(path string) map[string]uint64 {
	out := map[string]uint64{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

func (h *Hierarchy) readV2(dir string) (*Stats, error) {
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", dir, ErrNotFound)
		}
		return nil, fmt.Errorf("stat %s: %w", dir, err)
	}
	s := &Stats{}
	cpu := readKV(filepath.Join(dir, "cpu.stat"))
	s.CPUTotalNanos, s.CPUUserNanos, s.CPUSystemNanos = cpu["usage_usec"]*1000, cpu["user_usec"]*1000, cpu["system_usec"]*1000
	s.CPUPeriods, s.CPUThrottledPeriods, s.CPUThrottledNanos = cpu["nr_periods"], cpu["nr_throttled"], cpu["throttled_usec"]*1000
	s.MemoryUsage, _ = readUint(filepath.Join(dir, "memory.current"))
	s.MemoryMaxUsage, _ = readUint(filepath.Join(dir, "memory.peak"))
	s.MemoryLimit, _ = readUint(filepath.Join(dir, "memory.max"))
	s.MemorySwap, _ = readUint(filepath.Join(dir, "memory.swap.current"))
	ev := readKV(filepath.Join(dir, "memory.events"))
	s.MemoryFailcnt, s.OOMEvents = ev["max"], ev["oom_kill"]
	st := readKV(filepath.Join(dir, "memory.stat"))
	s.MemoryRSS, s.MemoryCache, s.MemoryMappedFile = st["anon"], st["file"], st["file_mapped"]
	s.PageFaults, s.MajorPageFaults = st["pgfault"], st["pgmajfault"]
	s.MemoryWorkingSet = sub(s.MemoryUsage, st["inactive_file"])
	s.MemoryKernel = st["kernel"]
	if s.MemoryKernel == 0 {
		s.MemoryKernel = st["kernel_stack"] + st["slab"] + st["pagetables"] + st["sock"]
	}
	s.Pids, _ = readUint(filepath.Join(dir, "pids.current"))
	s.PidsLimit, _ = readUint(filepath.Join(dir, "pids.max"))
	s.Blkio = readIOV2(dir)
	return s, nil
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// Resources are the pod-level limits Set applies (zero or nil: leave as is).
type Resources struct {
	CPUShares   uint64
	CPUQuota    int64 // -1: unlimited
	CPUPeriod   uint64
	CPUSetCPUs  string
	CPUSetMems  string
	MemoryLimit int64 // -1: unlimited
	PidsLimit   int64 // -1: unlimited
}

// Set creates cgroup path in each hierarchy it needs and writes r to it.
func (h *Hierarchy) Set(path string, r Resources) error {
	type write struct{ ctl, file, value string }
	var ws []write
	if h.Unified != "" {
		if r.CPUShares != 0 {
			ws = append(ws, write{"cpu", "cpu.weight", strconv.FormatUint(SharesToWeight(r.CPUShares), 10)})
		}
		if r.CPUQuota != 0 || r.CPUPeriod != 0 {
			q := "max"
			if r.CPUQuota > 0 {
				q = strconv.FormatInt(r.CPUQuota, 10)
			}
			p := r.CPUPeriod
			if p == 0 {
				p = 100000
			}
			ws = append(ws, write{"cpu", "cpu.max", fmt.Sprintf("%s %d", q, p)})
		}
		if r.MemoryLimit != 0 {
			ws = append(ws, write{"memory", "memory.max", limit(r.MemoryLimit, "max")})
		}
		if r.PidsLimit != 0 {
			ws = append(ws, write{"pids", "pids.max", limit(r.PidsLimit, "max")})
		}
		if r.CPUSetCPUs != "" {
			ws = append(ws, write{"cpuset", "cpuset.cpus", r.CPUSetCPUs})
		}
		if r.CPUSetMems != "" {
			ws = append(ws, write{"cpuset", "cpuset.mems", r.CPUSetMems})
		}
	} else {
		if r.CPUShares != 0 {
			ws = append(ws, write{"cpu", "cpu.shares", strconv.FormatUint(r.CPUShares, 10)})
		}
		if r.CPUPeriod != 0 {
			ws = append(ws, write{"cpu", "cpu.cfs_period_us", strconv.FormatUint(r.CPUPeriod, 10)})
		}
		if r.CPUQuota != 0 {
			ws = append(ws, write{"cpu", "cpu.cfs_quota_us", strconv.FormatInt(r.CPUQuota, 10)})
		}
		if r.MemoryLimit != 0 {
			ws = append(ws, write{"memory", "memory.limit_in_bytes", strconv.FormatInt(r.MemoryLimit, 10)})
		}
		if r.PidsLimit != 0 {
			ws = append(ws, write{"pids", "pids.max", limit(r.PidsLimit, "max")})
		}
		if r.CPUSetCPUs != "" {
			ws = append(ws, write{"cpuset", "cpuset.cpus", r.CPUSetCPUs})
		}
		if r.CPUSetMems != "" {
			ws = append(ws, write{"cpuset", "cpuset.mems", r.CPUSetMems})
		}
	}
	for _, w := range ws {
		d := h.Dir(w.ctl, path)
		if d == "" {
			return fmt.Errorf("cgroup controller %s is not mounted", w.ctl)
		}
		if err := h.mkdir(w.ctl, path); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, w.file), []byte(w.value), 0o644); err != nil {
			return fmt.Errorf("set %s: %w", filepath.Join(d, w.file), err)
		}
	}
	return nil
}

// mkdir creates path under controller ctl's mount. A new v1 cpuset cgroup
// starts with empty cpus and mems, so they are copied from its parent, as
// runc does.
func (h *Hierarchy) mkdir(ctl, path string) error {
	root := h.Dir(ctl, "/")
	cur := root
	for _, part := range strings.Split(strings.Trim(filepath.Clean(path), "/"), "/") {
		if part == "" {
			continue
		}
		parent := cur
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return fmt.Errorf("create cgroup %s: %w", cur, err)
		}
		if ctl == "cpuset" && h.Unified == "" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(parent, f)); err == nil && len(bytes.TrimSpace(b)) > 0 {
					_ = os.WriteFile(filepath.Join(cur, f), b, 0o644)
				}
			}
		}
	}
	return nil
}

// Join moves process pid into cgroup path in every mounted hierarchy (and
// the v1 name=systemd one is left alone), creating it where needed.
func (h *Hierarchy) Join(path string, pid int) error {
	targets := map[string]string{}
	if h.Unified != "" {
		targets[h.Unified] = "unified"
	} else {
		for ctl, m := range h.V1 {
			targets[m] = ctl
		}
	}
	for _, ctl := range targets {
		if err := h.mkdir(ctl, path); err != nil {
			return err
		}
		d := h.Dir(ctl, path)
		if ctl == "unified" {
			d = filepath.Join(h.Unified, path)
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("join %s: %w", d, err)
		}
	}
	return nil
}

func limit(v int64, unlimited string) string {
	if v < 0 {
		return unlimited
	}
	return strconv.FormatInt(v, 10)
}

// SharesToWeight converts cgroup v1 cpu.shares to v2 cpu.weight the way
// runc does (2..262144 → 1..10000).
func SharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}
