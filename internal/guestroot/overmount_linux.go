package guestroot

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/mountfd"
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

// Attach mounts the detached mount d (internal/mountfd) on target (a
// descriptor from OpenBeneath or MountDir, checked to be inside the
// root), at guest path guestPath. d is used up: it is closed.
func (r *Root) Attach(d *os.File, target *os.File, guestPath string) error {
	defer d.Close()
	if err := r.Inside(target, guestPath); err != nil {
		return err
	}
	if err := mountfd.Attach(d, target); err != nil {
		return fmt.Errorf("mount on %s in the guest: %w", guestPath, err)
	}
	return nil
}
