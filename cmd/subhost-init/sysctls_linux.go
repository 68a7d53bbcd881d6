package main

import (
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/mountinfo"
)

// lockSysctls, at the start of a shutdown, takes away the guest's write
// access to the sysctls of its own UTS and IPC namespaces: the launcher
// made /proc/sys read-only but for those (kernel/hostname, kernel/shm*,
// kernel/msg*, kernel/sem*, fs/mqueue...), each a proc mount of its own
// over the read-only one. Nothing writes them while the guest powers off,
// and Debian's umountfs forks a grep for every line of /proc/mounts:
// a dozen lines fewer are 15 to 25 ms off a Debian guest's shutdown
// on a slow machine. /proc/sys/net stays writable, for the network
// scripts' own stop; what is read-only or hidden stays so. An unmount
// that fails (a mount the guest cannot take away, under a user
// namespace) only leaves that sysctl as it was.
func lockSysctls() {
	mounts, err := mountinfo.Self()
	if err != nil {
		return
	}
	var holes []string
	for _, m := range mounts {
		if m.FSType == "proc" && isSysctlHole(m.Mountpoint) {
			holes = append(holes, m.Mountpoint)
		}
	}
	// The last made first: one may be mounted over another.
	slices.Reverse(holes)
	for _, h := range holes {
		_ = unix.Unmount(h, unix.MNT_DETACH)
	}
}

// isSysctlHole reports whether a proc mount at mountpoint is one of the
// writable entries below the read-only /proc/sys that lockSysctls takes
// away: any but /proc/sys itself and the network namespace's.
func isSysctlHole(mountpoint string) bool {
	rest, ok := strings.CutPrefix(mountpoint, "/proc/sys/")
	return ok && rest != "net" && !strings.HasPrefix(rest, "net/")
}
