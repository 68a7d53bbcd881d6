package nsfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/fdlock"
)

// ErrNotNamespace is returned for a file that exists but is not a pinned
// namespace of the wanted type (e.g. an empty file left by a crash
// between create and bind mount).
var ErrNotNamespace = errors.New("not a pinned namespace of that type")

// Open opens the namespace pinned at path, of type kind (CLONE_NEWNET,
// CLONE_NEWUSER...), or returns nil, nil when there is no file.
func Open(path string, kind int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("statfs %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil, ErrNotNamespace
	}
	got, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || got != kind {
		f.Close()
		return nil, ErrNotNamespace
	}
	return f, nil
}

// Pin bind-mounts the namespace file src (/proc/PID/ns/KIND) on path,
// which it creates; an existing path is an error.
func Pin(src, path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o444)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()
	if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("pin %s on %s: %w", src, path, err)
	}
	return nil
}

// Unpin removes a pin as `ip netns del` does: the kernel frees the
// namespace once nothing else holds it. Already gone is fine.
func Unpin(path string) error {
	var errs []error
	// EINVAL: the file is not a mount point (a half-made pin).
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.ENOENT && err != unix.EINVAL {
		errs = append(errs, fmt.Errorf("unmount %s: %w", path, err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", path, err))
	}
	return errors.Join(errs...)
}

// SharedDir makes dir what iproute2 makes /run/netns: a directory that is
// a shared mount point, so that a pin made (or removed) there propagates
// to every mount namespace that sees the directory, and removing it
// elsewhere really frees the namespace.
//
// Callers take turns, on a lock file in lockDir (".netns.lock" for
// /run/netns): two boots at once on a host where dir is not a mount
// point yet (subhosts started together after the host's boot) would
// each find it so and each bind it on itself, stacking two mounts where
// one belongs. lockDir must be a directory only root can write, the
// state root /run/subhost (fdlock.Named), not dir itself: /run/netns is
// 0755, so any local user could open it and flock it for ever, and every
// netns creation would wait. (iproute2 takes no lock: an `ip netns add`
// at the same instant can still stack one.)
func SharedDir(dir, lockDir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	lock := filepath.Join(lockDir, "."+filepath.Base(dir)+".lock")
	release, err := fdlock.Named(lock)
	if err != nil {
		return fmt.Errorf("lock %s: %w", lock, err)
	}
	defer release()
	for bound := false; ; bound = true {
		err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		// EINVAL: not a mount point yet. Bind it on itself once, as
		// iproute2 does, and try again.
		if err != unix.EINVAL || bound {
			return fmt.Errorf("make %s a shared mount: %w", dir, err)
		}
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s on itself: %w", dir, err)
		}
	}
}

// SameOwner reports whether the namespace open as ns belongs to the user
// namespace open as user (NS_GET_USERNS).
func SameOwner(ns, user *os.File) (bool, error) {
	owner, err := unix.IoctlRetInt(int(ns.Fd()), unix.NS_GET_USERNS)
	if err != nil {
		return false, fmt.Errorf("owner of %s: %w", ns.Name(), err)
	}
	defer unix.Close(owner)
	var a, b unix.Stat_t
	if err := unix.Fstat(owner, &a); err != nil {
		return false, err
	}
	if err := unix.Fstat(int(user.Fd()), &b); err != nil {
		return false, err
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}
