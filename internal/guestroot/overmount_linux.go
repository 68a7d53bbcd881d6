package guestroot

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// OpenBeneath opens what is at guestPath (a file or a directory) with
// flags (O_PATH for a mount target), through no symlink at all: the
// kernel's files the launcher hardens (/proc/kcore, /proc/sys/net...)
// are never symlinks, and one there is not followed. A missing entry is
// an error that errors.Is(err, unix.ENOENT) recognises. The result is
// checked to be inside the root.
func (r *Root) OpenBeneath(guestPath string, flags int) (*os.File, error) {
	parts, err := splitGuestPath(guestPath)
	if err != nil {
		return nil, err
	}
	rel := strings.Join(parts, "/")
	fd, err := unix.Openat2(int(r.dir.Fd()), rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC),
		Resolve: resolveFlags,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s in the guest root: %w", guestPath, err)
	}
	f := os.NewFile(uintptr(fd), r.path+"/"+rel)
	if err := r.Inside(f, guestPath); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Detached is a mount not attached anywhere yet (open_tree's or
// fsmount's descriptor), to be attached with Root.Attach.
type Detached struct {
	fd   int
	what string
}

// Close drops the mount unless it was attached.
func (d *Detached) Close() {
	if d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
}

// Clone makes a detached copy of the mount at src (a descriptor, any
// type; recursive: with the mounts below it) with mount attributes set
// (unix.MOUNT_ATTR_RDONLY...) on every mount of the copy. what names it
// in errors.
func Clone(src *os.File, what string, set uint64, recursive bool) (*Detached, error) {
	flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC | unix.AT_EMPTY_PATH
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(int(src.Fd()), "", uint(flags))
	if err != nil {
		return nil, fmt.Errorf("clone %s: open_tree: %w", what, err)
	}
	d := &Detached{fd: fd, what: what}
	if set != 0 {
		attr := unix.MountAttr{Attr_set: set}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			d.Close()
			return nil, fmt.Errorf("clone %s: mount_setattr: %w", what, err)
		}
	}
	return d, nil
}

// EmptyReadOnly makes a detached empty read-only tmpfs, to mask a
// directory with.
func EmptyReadOnly(what string) (*Detached, error) {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("empty tmpfs for %s: fsopen: %w", what, err)
	}
	defer unix.Close(fsfd)
	for _, o := range [][2]string{{"size", "4k"}, {"nr_inodes", "1"}, {"mode", "0555"}} {
		if err := unix.FsconfigSetString(fsfd, o[0], o[1]); err != nil {
			return nil, fmt.Errorf("empty tmpfs for %s: %s=%s: %w", what, o[0], o[1], err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("empty tmpfs for %s: %w", what, err)
	}
	fd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC,
		unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return nil, fmt.Errorf("empty tmpfs for %s: fsmount: %w", what, err)
	}
	return &Detached{fd: fd, what: what}, nil
}

// Attach mounts d on target (a descriptor from OpenBeneath or MountDir,
// checked to be inside the root), at guest path guestPath. d is used up.
func (r *Root) Attach(d *Detached, target *os.File, guestPath string) error {
	if d.fd < 0 {
		return errors.New("attach " + d.what + ": already attached")
	}
	if err := r.Inside(target, guestPath); err != nil {
		return err
	}
	if err := unix.MoveMount(d.fd, "", int(target.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount %s on %s: move_mount: %w", d.what, guestPath, err)
	}
	d.Close()
	return nil
}

// AdoptDetached takes the detached mount at descriptor fd (one a
// privileged process prepared and passed down, see internal/mountfd) for
// Root.Attach. what names it in errors.
func AdoptDetached(fd int, what string) *Detached {
	return &Detached{fd: fd, what: what}
}
