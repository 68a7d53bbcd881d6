package guestroot

import (
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// ownFDs is this process's descriptor directory in procfs (/proc/self/fd),
// opened once and checked to be procfs: kernelPath reads each descriptor's
// path back through it with one readlinkat.
//
// pathrs-lite's procfs.ProcSelfFdReadlink, used here before, defends
// against a /proc its caller does not control (overmounted, or a fake
// one) by opening a private procfs and re-verifying it and the entry's
// mount on every call: five system calls and a 4 KiB buffer each time,
// about 18 µs warm, and most of a millisecond cold. The launcher calls
// Inside some sixty times on every boot's critical path. Every caller of
// this package runs in a mount namespace the guest cannot change (the
// host's, or the launcher's private copy of it before the guest's first
// process runs), so the only /proc it could see is the host's, which
// only the host's root can overmount; the magic check still refuses a
// /proc that is not procfs.
var ownFDs = sync.OnceValues(func() (*os.File, error) {
	f, err := os.OpenFile("/proc/self/fd", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil {
		f.Close()
		return nil, fmt.Errorf("/proc/self/fd: %w", err)
	}
	if fs.Type != unix.PROC_SUPER_MAGIC {
		f.Close()
		return nil, fmt.Errorf("/proc/self/fd is not on procfs (filesystem magic %#x)", fs.Type)
	}
	return f, nil
})

// kernelPath is where the kernel says f is: the link /proc/self/fd/N.
func kernelPath(f *os.File) (string, error) {
	fds, err := ownFDs()
	if err != nil {
		return "", err
	}
	fd := int(f.Fd()) // -1 once f is closed: no such entry
	name := strconv.Itoa(fd)
	// A guest root's paths are short: a small buffer on the stack first,
	// one of PATH_MAX only for a longer one.
	var small [256]byte
	for buf := small[:]; ; buf = make([]byte, unix.PathMax+1) {
		n, err := unix.Readlinkat(int(fds.Fd()), name, buf)
		switch {
		case err != nil:
			return "", fmt.Errorf("readlink /proc/self/fd/%d: %w", fd, err)
		case n < len(buf):
			return string(buf[:n]), nil
		case len(buf) > unix.PathMax:
			return "", fmt.Errorf("readlink /proc/self/fd/%d: longer than PATH_MAX", fd)
		}
	}
}
