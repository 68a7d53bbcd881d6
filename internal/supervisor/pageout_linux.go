package supervisor

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// shedStartupPages lets the kernel reclaim the pages of this binary that
// start-up touched (package initialisation of gRPC, HCL, cobra...) and
// that a supervisor waiting for its guest will not need: they are clean
// file pages, faulted back from the page cache if they ever are. With
// one supervisor per running subhost, this is most of what each costs
// (its anonymous memory is about 3 MB).
func shedStartupPages() {
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
		unix.Syscall(unix.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), unix.MADV_PAGEOUT)
	}
}
