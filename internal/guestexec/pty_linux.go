package guestexec

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ptmxMinor is /dev/ptmx's minor under TTYAUX_MAJOR (5), which is also
// what a devpts instance's own ptmx node is.
const ptmxMinor = 2

// OpenGuestPTY opens a new pty of the guest's own devpts: its /dev/pts/ptmx
// is resolved inside root (the guest's root directory, e.g. an O_PATH
// descriptor of /proc/PID/root), with the guest's symlinks confined to it
// (RESOLVE_IN_ROOT) and no /proc magic link followed, and must be a
// devpts instance's ptmx. It is only opened once it is known to be one:
// the guest controls the path, and an open of a device node as the
// host's root, outside the guest's device policy, can act (a watchdog
// arms, a serial line's DTR rises). The slave is opened through the
// master (TIOCGPTPEER), never by path. The master is non-blocking, for
// Go's poller; neither becomes the caller's controlling terminal.
func OpenGuestPTY(root *os.File) (master, slave *os.File, err error) {
	pfd, err := unix.Openat2(int(root.Fd()), "dev/pts/ptmx", &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("open the guest's /dev/pts/ptmx: %w", err)
	}
	defer unix.Close(pfd)
	var sfs unix.Statfs_t
	var st unix.Stat_t
	if err := unix.Fstatfs(pfd, &sfs); err != nil {
		return nil, nil, fmt.Errorf("the guest's /dev/pts/ptmx: %w", err)
	}
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, nil, fmt.Errorf("the guest's /dev/pts/ptmx: %w", err)
	}
	if sfs.Type != unix.DEVPTS_SUPER_MAGIC || st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 5 || unix.Minor(st.Rdev) != ptmxMinor {
		return nil, nil, fmt.Errorf("the guest's /dev/pts/ptmx is not a devpts ptmx (filesystem %#x, mode %#o, device %d:%d)",
			sfs.Type, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	// The node just checked, opened again through this process's own
	// descriptor of it (not through the guest's path, which may have
	// changed since).
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", pfd), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open the guest's /dev/pts/ptmx: %w", err)
	}
	m := os.NewFile(uintptr(fd), "/dev/pts/ptmx")
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		return nil, nil, fmt.Errorf("unlock the guest's pty: %w", err)
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.TIOCGPTPEER), uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		return nil, nil, fmt.Errorf("open the guest's pty slave: %w", errno)
	}
	n, _ := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	return m, os.NewFile(sfd, fmt.Sprintf("/dev/pts/%d", n)), nil
}
