package mountfd

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Options say how Clone copies a mount.
type Options struct {
	// Recursive: with the mounts below it, else that one mount alone.
	Recursive bool
	// Set and Clear are MOUNT_ATTR_* flags set and cleared on every
	// mount of the copy.
	Set, Clear uint64
	// Userns, when not nil, idmaps every mount of the copy through that
	// user namespace; a file system the kernel cannot idmap is a
	// ProbeError.
	Userns *os.File
}

// Clone makes a detached copy of the mount at the open descriptor src
// (O_PATH will do; any type of file), rooted there. what names it in
// errors, and is the result's name.
func Clone(src *os.File, what string, o Options) (*os.File, error) {
	return CloneFD(int(src.Fd()), what, o)
}

// CloneFD is Clone of a directory open as the descriptor fd, which stays
// its owner's to close: wrapping it in an os.File to call Clone would
// close it a second time when that File is collected, and so close
// whatever then has its number.
func CloneFD(fd int, what string, o Options) (*os.File, error) {
	return clone(fd, "", unix.AT_EMPTY_PATH, what, o)
}

// CloneAt is Clone of the directory at path, a host path the host
// chose, opened without following a final symlink.
func CloneAt(path string, o Options) (*os.File, error) {
	return clone(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, path, o)
}

func clone(dirfd int, path string, flags int, what string, o Options) (*os.File, error) {
	flags |= unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC
	if o.Recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(dirfd, path, uint(flags))
	if err != nil {
		return nil, fmt.Errorf("clone %s: open_tree: %w", what, err)
	}
	f := os.NewFile(uintptr(fd), what)
	if o.Userns != nil {
		err = Idmap(f, o.Userns)
	}
	if err == nil && o.Set|o.Clear != 0 {
		attr := unix.MountAttr{Attr_set: o.Set, Attr_clr: o.Clear}
		if serr := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); serr != nil {
			err = fmt.Errorf("clone %s: mount_setattr: %w", what, serr)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Idmap idmaps every mount of the detached tree f through the user
// namespace userns.
func Idmap(f, userns *os.File) error {
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(int(f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return &ProbeError{Path: f.Name(), FSType: fsName(f), Err: err}
	}
	return nil
}

// ProbeError says that a file system cannot be idmapped here.
type ProbeError struct {
	Path, FSType string
	Err          error
}

func (e *ProbeError) Error() string {
	return fmt.Sprintf("%s (%s) cannot be idmapped on this kernel, which an unprivileged guest needs (PRIVATE_USERS; ext4, xfs, btrfs and tmpfs can be, and overlayfs over idmapped layers): mount_setattr MOUNT_ATTR_IDMAP: %v", e.Path, e.FSType, e.Err)
}

func (e *ProbeError) Unwrap() error { return e.Err }

// Probe tells whether the mount tree at path can be idmapped through
// userns, without changing anything: the clone it makes is dropped.
func Probe(path string, userns *os.File) error {
	f, err := CloneAt(path, Options{Recursive: true, Userns: userns})
	if err != nil {
		return err
	}
	return f.Close()
}

// New mounts a file system of type fstype, detached: source "" for a
// virtual one (tmpfs), else the block device; options are its string
// options (mode=755); attrs the MOUNT_ATTR_* flags of the mount.
func New(fstype, source string, options [][2]string, attrs uint64) (*os.File, error) {
	fsfd, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fsopen %s: %w", fstype, err)
	}
	defer unix.Close(fsfd)
	if source != "" {
		options = append([][2]string{{"source", source}}, options...)
	}
	for _, o := range options {
		if o[1] == "" {
			err = unix.FsconfigSetFlag(fsfd, o[0])
		} else {
			err = unix.FsconfigSetString(fsfd, o[0], o[1])
		}
		if err != nil {
			return nil, fmt.Errorf("mount %s %s: option %s=%s: %w", fstype, source, o[0], o[1], err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("mount %s %s: %w", fstype, source, err)
	}
	fd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, int(attrs))
	if err != nil {
		return nil, fmt.Errorf("mount %s %s: fsmount: %w", fstype, source, err)
	}
	name := fstype
	if source != "" {
		name = source
	}
	return os.NewFile(uintptr(fd), name), nil
}

// EmptyReadOnly makes a detached empty read-only tmpfs, to mask a
// directory with.
func EmptyReadOnly(what string) (*os.File, error) {
	f, err := New("tmpfs", "", [][2]string{{"size", "4k"}, {"nr_inodes", "1"}, {"mode", "0555"}},
		unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return nil, fmt.Errorf("empty tmpfs for %s: %w", what, err)
	}
	return f, nil
}

// Attach mounts the detached tree f on what is open as target (an
// O_PATH descriptor, from inside a guest root when it is the guest's),
// in the caller's mount namespace. Closing f afterwards leaves the mount
// where it is.
func Attach(f, target *os.File) error {
	if err := unix.MoveMount(int(f.Fd()), "", int(target.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach %s on %s: move_mount: %w", f.Name(), target.Name(), err)
	}
	return nil
}

// fsName names the file system f is on, for messages.
func fsName(f *os.File) string {
	var st unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &st) != nil {
		return "unknown file system"
	}
	if n, ok := magicNames[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("file system type %#x", st.Type)
}

var magicNames = map[int64]string{
	unix.EXT4_SUPER_MAGIC:      "ext4",
	unix.XFS_SUPER_MAGIC:       "xfs",
	unix.BTRFS_SUPER_MAGIC:     "btrfs",
	unix.TMPFS_MAGIC:           "tmpfs",
	unix.OVERLAYFS_SUPER_MAGIC: "overlayfs",
	unix.F2FS_SUPER_MAGIC:      "f2fs",
	unix.MSDOS_SUPER_MAGIC:     "vfat",
	unix.NFS_SUPER_MAGIC:       "nfs",
	unix.PROC_SUPER_MAGIC:      "proc",
	0x65735546:                 "fuse",
}
