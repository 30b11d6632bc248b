package ociruntime

import (
	"reflect"
	"strings"
	"testing"
)

// Output of `runc events --stats` (runc 1.1, cgroup v1), trimmed.
const statsV1 = `{"type":"stats","id":"c1","data":{"cpu":{"usage":{"total":2500000000,"percpu":[1,2],"kernel":500000000,"user":2000000000},"throttling":{"periods":10,"throttledPeriods":3,"throttledTime":4000}},"memory":{"cache":8192,"usage":{"limit":67108864,"usage":3000000,"max":4000000,"failcnt":2},"swap":{"limit":9223372036854771712,"usage":3500000,"failcnt":0},"raw":{"cache":8192,"total_cache":8192,"total_rss":2000000,"total_inactive_file":100000,"total_mapped_file":4096,"total_pgfault":900,"total_pgmajfault":9}},"pids":{"current":3,"limit":100}}}`

// The same from cgroup v2.
const statsV2 = `{"type":"stats","id":"c1","data":{"cpu":{"usage":{"total":1000,"kernel":400,"user":600}},"memory":{"usage":{"limit":9223372036854771712,"usage":500000},"swap":{"usage":1000},"raw":{"anon":300000,"file":100000,"file_mapped":2048,"inactive_file":50000,"pgfault":70,"pgmajfault":1}},"pids":{"current":1}}}`

func TestParseStats(t *testing.T) {
	got, err := parseStats("c1", []byte(statsV1))
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{CPUTotalNanos: 2500000000, CPUUserNanos: 2000000000, CPUSystemNanos: 500000000, CPUPeriods: 10, CPUThrottledPeriods: 3, CPUThrottledNanos: 4000,
		MemoryUsage: 3000000, MemoryWorkingSet: 2900000, MemoryRSS: 2000000, MemoryCache: 8192, MemoryMappedFile: 4096, MemorySwap: 500000,
		MemoryMaxUsage: 4000000, MemoryFailcnt: 2, MemoryLimit: 67108864, PageFaults: 900, MajorPageFaults: 9, Pids: 3, PidsLimit: 100}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("v1:\n got %+v\nwant %+v", *got, want)
	}
	got, err = parseStats("c1", []byte(statsV2))
	if err != nil {
		t.Fatal(err)
	}
	want = Stats{CPUTotalNanos: 1000, CPUUserNanos: 600, CPUSystemNanos: 400, MemoryUsage: 500000, MemoryWorkingSet: 450000, MemoryRSS: 300000,
		MemoryMappedFile: 2048, MemorySwap: 1000, PageFaults: 70, MajorPageFaults: 1, Pids: 1}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("v2:\n got %+v\nwant %+v", *got, want)
	}
	if _, err := parseStats("c1", []byte("not json")); err == nil {
		t.Error("garbage parsed")
	}
}

func TestSystemdCgroupFlag(t *testing.T) {
	r := &Runtime{Binary: "/usr/sbin/runc", Root: "/run/r"}
	if got := strings.Join(r.CreateArgv("c1", "/b", "/p"), " "); got != "/usr/sbin/runc --root /run/r create --bundle /b --pid-file /p c1" {
		t.Errorf("cgroupfs create argv: %s", got)
	}
	r.SystemdCgroup = true
	if got := strings.Join(r.CreateArgv("c1", "/b", "/p"), " "); got != "/usr/sbin/runc --root /run/r --systemd-cgroup create --bundle /b --pid-file /p c1" {
		t.Errorf("systemd create argv: %s", got)
	}
}
