package seccompguard

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/mountinfo"
)

// Install loads the guard into the calling process, on every thread
// (SECCOMP_FILTER_FLAG_TSYNC), with opt (HostOptions, and what the
// caller knows of the guest). It is inherited across fork and execve and
// cannot be removed. The caller must hold CAP_SYS_ADMIN.
func Install(opt Options) error {
	prog, err := Program(runtime.GOARCH, opt)
	if err != nil {
		return err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return fmt.Errorf("seccomp guard: assemble: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	r1, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return fmt.Errorf("seccomp guard: install: %w", errno)
	}
	if r1 != 0 {
		return fmt.Errorf("seccomp guard: install: thread %d could not be synchronized", r1)
	}
	return nil
}

// HostOptions follows the host's own policy: userfaultfd(2) is let
// through only where vm.unprivileged_userfaultfd allows it to everyone.
// A host without the sysctl (a kernel older than 5.2, or without
// userfaultfd) gets the stricter guard.
func HostOptions() Options {
	b, err := os.ReadFile("/proc/sys/vm/unprivileged_userfaultfd")
	return Options{AllowUserfaultfd: err == nil && strings.TrimSpace(string(b)) == "1"}
}

// OwnRoot reports whether the calling process's root directory is a file
// system of the guest's own: an overlay, or a loop device's (block major
// 7). Anything else (a bind of a host directory) may have host mounts
// below it.
func OwnRoot() bool {
	var sfs unix.Statfs_t
	if unix.Statfs("/", &sfs) == nil && sfs.Type == unix.OVERLAYFS_SUPER_MAGIC {
		return true
	}
	var st unix.Stat_t
	if unix.Stat("/", &st) != nil {
		return false
	}
	if unix.Major(st.Dev) != 0 {
		return unix.Major(st.Dev) == 7
	}
	// An anonymous device number (btrfs shows one, not its device's):
	// the mount's source names the device.
	mounts, err := mountinfo.Self()
	return err == nil && loopSource(mountinfo.TopAt(mounts, "/"))
}

// loopSource reports whether mount m was mounted from a loop device.
func loopSource(m *mountinfo.Entry) bool {
	return m != nil && strings.HasPrefix(m.Source, "/dev/loop")
}
