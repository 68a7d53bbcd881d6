package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// onThrowawayThread runs fn on an OS thread of its own that dies
// afterwards: fn may change the thread's namespaces without any other
// goroutine ever running in them. (A goroutine that exits while locked to
// its thread takes the thread with it.)
func onThrowawayThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the runtime must not reuse this thread.
		done <- fn()
	}()
	return <-done
}

// handleAt opens a netlink route socket inside the network namespace ns
// refers to. The socket stays in that namespace for its whole life, so
// every request through the handle acts there, from any thread.
func handleAt(ns *os.File) (*netlink.Handle, error) {
	var h *netlink.Handle
	err := onThrowawayThread(func() error {
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns %s: %w", ns.Name(), err)
		}
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink socket in %s: %w", ns.Name(), err)
	}
	return h, nil
}

// openNetns opens a network namespace file, or returns nil, nil when
// there is none. A file that exists but is not a network namespace (e.g.
// an empty file left by a crash between create and bind mount) is an
// error.
func openNetns(path string) (*os.File, error) {
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
		return nil, errNotNetns
	}
	kind, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || kind != unix.CLONE_NEWNET {
		f.Close()
		return nil, errNotNetns
	}
	return f, nil
}

var errNotNetns = errors.New("not a network namespace")

// prepareNetnsDir makes netnsDir what iproute2 makes it: a directory that
// is a shared mount point, so that a netns bind mount made (or removed)
// here propagates to every mount namespace that sees the directory, and
// `ip netns del` elsewhere really frees the namespace.
func prepareNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return err
	}
	for bound := false; ; bound = true {
		err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		// EINVAL: not a mount point yet. Bind it on itself once, as
		// iproute2 does, and try again.
		if err != unix.EINVAL || bound {
			return fmt.Errorf("make %s a shared mount: %w", netnsDir, err)
		}
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s on itself: %w", netnsDir, err)
		}
	}
}

// createNetns makes a new network namespace and pins it at path with a
// bind mount, the way `ip netns add` does. The unshare happens on a
// thread that dies afterwards, so no goroutine ever runs inside the new
// namespace by accident.
func createNetns(path string) error {
	if err := prepareNetnsDir(); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()
	err = onThrowawayThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare network namespace: %w", err)
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind the new network namespace on %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// deleteNetns unpins a named network namespace as `ip netns del` does:
// the kernel frees it once nothing else holds it. Already gone is fine.
func deleteNetns(path string) error {
	var errs []error
	// EINVAL: the file is not a mount point (a half-made namespace).
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.ENOENT && err != unix.EINVAL {
		errs = append(errs, fmt.Errorf("unmount %s: %w", path, err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", path, err))
	}
	return errors.Join(errs...)
}
