package mountfd

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// CloneTree returns a detached recursive clone of the mount tree at path
// (a directory the host chose, opened without following a final
// symlink). With userns non-nil every mount of the clone is idmapped
// through it and nosuid is cleared (the host-side mount stays nosuid for
// the host's users; inside the guest setuid must work). An idmap the
// kernel or the file system refuses is an error that names the file
// system: ProbeError.
func CloneTree(path string, userns *os.File) (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		return nil, fmt.Errorf("clone the mount tree at %s: open_tree: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if userns == nil {
		return f, nil
	}
	if err := Idmap(f, userns, unix.MOUNT_ATTR_NOSUID); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// CloneLayer returns a detached clone of the mount at the directory open
// as dirfd (named name in messages), rooted at that directory and without
// the mounts below it (an overlay layer never shows them), idmapped
// through userns: a layer for an overlay assembled inside that user
// namespace. Its other flags are the original's.
func CloneLayer(dirfd int, name string, userns *os.File) (*os.File, error) {
	fd, err := unix.OpenTree(dirfd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return nil, fmt.Errorf("clone the mount at %s: open_tree: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	if err := Idmap(f, userns, 0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// SetAttr sets and clears MOUNT_ATTR_* flags on every mount of the
// detached tree f.
func SetAttr(f *os.File, set, clear uint64) error {
	attr := unix.MountAttr{Attr_set: set, Attr_clr: clear}
	if err := unix.MountSetattr(int(f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("%s: mount_setattr: %w", f.Name(), err)
	}
	return nil
}

// Idmap idmaps every mount of the detached tree f through the user
// namespace userns, and clears the mount attributes in clear.
func Idmap(f, userns *os.File, clear uint64) error {
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Attr_clr: clear, Userns_fd: uint64(userns.Fd())}
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
	f, err := CloneTree(path, userns)
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

// Attach mounts the detached tree f on the directory open as target (an
// O_PATH descriptor from inside a guest root), in the caller's mount
// namespace.
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
