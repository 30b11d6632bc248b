package sdk

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// TrimExecutablePages drops this process's page-table entries for the
// read-only mappings (text, rodata) of its own executable. A Go process's
// package initialisation touches code all over a large binary, and the
// kernel's fault-around then maps even more of it; an idle plugin needs
// little of that afterwards. The pages stay in the page cache, shared with
// every other process running the binary, and fault back in (minor faults)
// when used. Writable mappings are never touched: MADV_DONTNEED on them
// would discard data.
func TrimExecutablePages() {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") || fields[1][0] != 'r' {
			continue
		}
		start, end, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		lo, err1 := strconv.ParseUint(start, 16, 64)
		hi, err2 := strconv.ParseUint(end, 16, 64)
		if err1 != nil || err2 != nil || hi <= lo {
			continue
		}
		// Random access: no fault-around (mapping 16 neighbours of every
		// faulting page) from now on, so what is resident is what is used.
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), uintptr(syscall.MADV_RANDOM))
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), uintptr(syscall.MADV_DONTNEED))
	}
}
