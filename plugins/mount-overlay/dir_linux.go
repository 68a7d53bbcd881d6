package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/mountinfo"
)

// dir is a directory held open (O_PATH) together with what identifies it:
// the path the kernel gives for the descriptor, its device and inode, and
// the ID of the mount it was found on. Mounts and checks use the
// descriptor, never a path string joined onto a directory, so that a
// symlink swapped in afterwards cannot redirect them.
type dir struct {
	fd    int
	path  string
	dev   uint64
	ino   uint64
	mntID uint64
}

// openDir opens an operator-given directory, following symlinks (the
// config and HOME are root's own).
func openDir(path string) (*dir, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return newDir(fd)
}

// openAt opens name in d. follow says whether a symlink as name itself
// is followed (operator-made HOME/root may be one; live and mnt may not).
func openAt(d *dir, name string, follow bool) (*dir, error) {
	flags := unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Openat(d.fd, name, flags, 0)
	if errors.Is(err, unix.ENOTDIR) && !follow {
		// O_PATH|O_NOFOLLOW would open a symlink itself; O_DIRECTORY
		// then fails with ENOTDIR. Say what it is.
		var st unix.Stat_t
		if unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			err = unix.ELOOP
		}
	}
	if err != nil {
		return nil, err
	}
	return newDir(fd)
}

// openInside opens name inside root, which holds a tenant's files: no
// symlink is followed (a symlinked root/ or work/ is refused, not
// resolved), ".." cannot leave root, and no mount point is crossed, so
// what is opened is a directory of root's own filesystem.
func openInside(root *dir, name string) (*dir, error) {
	fd, err := unix.Openat2(root.fd, name, &unix.OpenHow{
		// Not O_NOFOLLOW: with O_PATH it would open a final symlink
		// itself; RESOLVE_NO_SYMLINKS refuses it (ELOOP) instead.
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return nil, err
	}
	return newDir(fd)
}

func newDir(fd int) (*dir, error) {
	d := &dir{fd: fd}
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_INO|unix.STATX_MNT_ID, &stx); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if stx.Mode&unix.S_IFMT != unix.S_IFDIR {
		unix.Close(fd)
		return nil, unix.ENOTDIR
	}
	d.dev, d.ino, d.mntID = unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Ino, stx.Mnt_id
	p, err := fdPath(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, " (deleted)") {
		unix.Close(fd)
		return nil, fmt.Errorf("the directory has no path (%q): deleted, or outside this mount namespace", p)
	}
	d.path = p
	return d, nil
}

// procFD, when not -1, is /proc opened before the overlay helper left it
// behind by a chroot (userns_linux.go): fdPath reads links there.
var procFD = -1

// fdPath is the path of the open descriptor fd, as the kernel gives it
// from this process's root.
func fdPath(fd int) (string, error) {
	if procFD < 0 {
		return os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(procFD, "self/fd/"+strconv.Itoa(fd), buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// procPath names the descriptor for system calls that take a path.
func (d *dir) procPath() string { return "/proc/self/fd/" + strconv.Itoa(d.fd) }

func (d *dir) close() {
	if d != nil && d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
}

// relPath is d's path inside its filesystem, as mountinfo's root field
// gives it for a bind mount of d.
func (d *dir) relPath(mounts []mountinfo.Entry) (string, bool) {
	m := mountinfo.ByID(mounts, int(d.mntID))
	if m == nil || !within(d.path, m.Mountpoint) {
		return "", false
	}
	rest := strings.TrimPrefix(d.path, m.Mountpoint)
	if m.Mountpoint == "/" {
		rest = d.path
	}
	rel := strings.TrimSuffix(m.Root, "/") + "/" + strings.TrimPrefix(rest, "/")
	if rel != "/" {
		rel = strings.TrimSuffix(rel, "/")
	}
	return rel, true
}

// sameDev reports whether mount m is of d's filesystem: whether the mount
// table gives m the device number it gives the mount d is on. (Not d's
// own st_dev: a btrfs subvolume's differs from the one the mount table
// shows for the file system.)
func (d *dir) sameDev(m *mountinfo.Entry, mounts []mountinfo.Entry) bool {
	own := mountinfo.ByID(mounts, int(d.mntID))
	if own == nil {
		return unix.Major(d.dev) == m.Major && unix.Minor(d.dev) == m.Minor
	}
	return own.Major == m.Major && own.Minor == m.Minor
}

// describeOpenErr turns an open error into the words an operator reads
// after a path.
func describeOpenErr(err error) string {
	switch {
	case errors.Is(err, unix.ENOENT):
		return "no such directory"
	case errors.Is(err, unix.ENOTDIR):
		return "not a directory"
	case errors.Is(err, unix.ELOOP):
		return "is a symlink (refused)"
	case errors.Is(err, unix.EXDEV):
		return "crosses a mount point (refused)"
	default:
		return err.Error()
	}
}
