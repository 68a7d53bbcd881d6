// Package pageshed lets a long-lived process give back the pages of its
// own executable that start-up touched and its waiting will not need.
package pageshed

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Advice is what to do with the pages.
type Advice int

const (
	// Unmap drops them from this process only (MADV_DONTNEED): they stay
	// in the page cache for the next process that runs the binary.
	Unmap Advice = unix.MADV_DONTNEED
	// Reclaim also lets the kernel evict those only this process maps
	// (MADV_PAGEOUT).
	Reclaim Advice = unix.MADV_PAGEOUT
)

// Shed applies advice to the read-only mappings of this process's
// executable, after returning free heap to the kernel: clean file pages
// that start-up touched (package initialisation), faulted back from the
// page cache if they are ever needed again. With one long-lived process
// per running subhost, they are most of what each costs.
func Shed(advice Advice) {
	debug.FreeOSMemory()
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
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
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
		// A plain madvise on a read-only file mapping: nothing of the
		// program's state is lost, whatever the kernel decides.
		unix.Syscall(unix.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), uintptr(advice))
	}
}
