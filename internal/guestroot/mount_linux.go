package guestroot

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// MountError is a failed mount, worded like runc's:
// "mount proc on /proc (flags=MS_NOSUID|MS_NODEV|MS_NOEXEC): EPERM".
type MountError struct {
	Source, Target, FSType, Data string
	Flags                        uintptr
	Err                          error
}

func (e *MountError) Error() string {
	what := e.FSType
	if what == "" {
		what = e.Source
	}
	var opts []string
	if e.Flags != 0 {
		opts = append(opts, "flags="+FlagString(e.Flags))
	}
	if e.Data != "" {
		opts = append(opts, "data="+e.Data)
	}
	s := fmt.Sprintf("mount %s on %s", what, e.Target)
	if len(opts) > 0 {
		s += " (" + strings.Join(opts, ", ") + ")"
	}
	return s + ": " + e.Err.Error()
}

func (e *MountError) Unwrap() error { return e.Err }

var flagNames = []struct {
	bit  uintptr
	name string
}{
	{unix.MS_RDONLY, "MS_RDONLY"},
	{unix.MS_NOSUID, "MS_NOSUID"},
	{unix.MS_NODEV, "MS_NODEV"},
	{unix.MS_NOEXEC, "MS_NOEXEC"},
	{unix.MS_REMOUNT, "MS_REMOUNT"},
	{unix.MS_BIND, "MS_BIND"},
	{unix.MS_REC, "MS_REC"},
	{unix.MS_PRIVATE, "MS_PRIVATE"},
	{unix.MS_SLAVE, "MS_SLAVE"},
	{unix.MS_SHARED, "MS_SHARED"},
	{unix.MS_STRICTATIME, "MS_STRICTATIME"},
}

// FlagString spells mount flags as MS_A|MS_B.
func FlagString(flags uintptr) string {
	var names []string
	for _, f := range flagNames {
		if flags&f.bit != 0 {
			names = append(names, f.name)
			flags &^= f.bit
		}
	}
	if flags != 0 {
		names = append(names, fmt.Sprintf("%#x", flags))
	}
	return strings.Join(names, "|")
}

// Mount describes one mount into the guest.
type Mount struct {
	// Source is the device or, for a bind mount, a descriptor's
	// /proc/self/fd path; FSType is "" for a bind mount.
	Source, FSType, Data string
	Flags                uintptr
	// Magic is the statfs type the mounted filesystem must have (0: no
	// check).
	Magic int64
}

// MountAt mounts m through the descriptor target (from MountDir, or a
// file the host created), at guest path guestPath (for errors and for
// the check). It then reopens guestPath to confirm that the new
// filesystem is what sits there.
func (r *Root) MountAt(m Mount, target *os.File, guestPath string) error {
	merr := func(err error) error {
		return &MountError{Source: m.Source, Target: guestPath, FSType: m.FSType, Data: m.Data, Flags: m.Flags, Err: err}
	}
	if err := r.Inside(target, guestPath); err != nil {
		return merr(err)
	}
	if err := unix.Mount(m.Source, fdPath(target), m.FSType, m.Flags, m.Data); err != nil {
		return merr(err)
	}
	if m.Magic == 0 {
		return nil
	}
	f, err := r.MountDir(guestPath, 0)
	if err != nil {
		return merr(fmt.Errorf("reopen after mounting: %w", err))
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return merr(fmt.Errorf("statfs after mounting: %w", err))
	}
	// Statfs_t.Type is int32 on 32-bit targets; magics like 0x62656572
	// fit either way.
	if int64(st.Type) != m.Magic {
		return merr(fmt.Errorf("after mounting, %s holds filesystem type %#x, want %#x", guestPath, st.Type, m.Magic))
	}
	return nil
}

// Node is a device node to create in the guest's /dev.
type Node struct {
	Name         string // a single name, e.g. "null", "vda1"
	Type         uint32 // unix.S_IFCHR or unix.S_IFBLK
	Major, Minor uint32
	Perm         uint32 // e.g. 0o666
}

// Mknod creates n with mknodat relative to the opened directory dir (the
// guest's fresh /dev), then checks with fstatat, without following a
// symlink, that what is there has the type and major:minor asked for.
func Mknod(dir *os.File, n Node) error {
	if err := checkName(n.Name); err != nil {
		return err
	}
	if n.Type != unix.S_IFCHR && n.Type != unix.S_IFBLK {
		return fmt.Errorf("mknod /dev/%s: type %#o is not a device", n.Name, n.Type)
	}
	dirfd := int(dir.Fd())
	dev := unix.Mkdev(n.Major, n.Minor)
	if err := unix.Mknodat(dirfd, n.Name, n.Type|n.Perm, int(dev)); err != nil {
		return fmt.Errorf("mknod /dev/%s %d:%d: %w", n.Name, n.Major, n.Minor, err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, n.Name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("mknod /dev/%s: check: %w", n.Name, err)
	}
	if st.Mode&unix.S_IFMT != n.Type || st.Rdev != dev {
		return fmt.Errorf("mknod /dev/%s: made mode %#o rdev %d:%d, want type %#o %d:%d",
			n.Name, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), n.Type, n.Major, n.Minor)
	}
	// mknod applies the umask; set the permission exactly.
	if err := unix.Fchmodat(dirfd, n.Name, n.Perm, 0); err != nil {
		return fmt.Errorf("chmod /dev/%s: %w", n.Name, err)
	}
	return nil
}

// Symlink creates name -> target in the opened directory dir.
func Symlink(dir *os.File, name, target string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := unix.Symlinkat(target, int(dir.Fd()), name); err != nil {
		return fmt.Errorf("symlink %s -> %s: %w", name, target, err)
	}
	return nil
}

// Mkdir creates the directory name in the opened directory dir with
// exactly perm and opens it as a mount target.
func Mkdir(dir *os.File, name string, perm uint32) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	dirfd := int(dir.Fd())
	if err := unix.Mkdirat(dirfd, name, perm); err != nil {
		return nil, fmt.Errorf("mkdir %s: %w", name, err)
	}
	if err := unix.Fchmodat(dirfd, name, perm, 0); err != nil {
		return nil, fmt.Errorf("chmod %s: %w", name, err)
	}
	fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: resolveFlags,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// CreateFile creates an empty regular file name in the opened directory
// dir (it must not exist), to bind-mount a file onto.
func CreateFile(dir *os.File, name string, perm uint32) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// checkName accepts one plain path component.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.ContainsRune(name, 0) {
		return fmt.Errorf("name %q is not a single path component", name)
	}
	return nil
}
