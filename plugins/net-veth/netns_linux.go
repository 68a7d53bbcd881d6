package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/nsfs"
	"github.com/subhost/subhost/internal/state"
)

// onThrowawayThread runs fn on an OS thread of its own that dies
// afterwards: fn may change the thread's namespaces without any other
// goroutine ever running in them. (A goroutine that exits while locked to
// its thread takes the thread with it; the main thread, which the
// runtime cannot end, it parks for good, in whatever namespace fn left
// it: so /proc/self/ns, which is the main thread's, says nothing about
// the others.)
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
// there is none; a file that is not one is errNotNetns.
func openNetns(path string) (*os.File, error) {
	return nsfs.Open(path, unix.CLONE_NEWNET)
}

var errNotNetns = nsfs.ErrNotNamespace

// lockDir holds the lock on making netnsDir a shared mount: the state
// root, whatever the runner's --state-dir, since /run/netns is one for
// every runner on the host (and the userns stage takes the same lock
// there). Tests point it at a scratch directory.
var lockDir = state.DefaultRoot

func prepareNetnsDir() error { return nsfs.SharedDir(netnsDir, lockDir) }

// madeMark is the file that says this stage made the network namespace
// of subhost name: written before the namespace is made, removed once it
// is deleted. With the state Up hands back, it tells a namespace of the
// subhost's from one pinned under the same name by someone else (`ip
// netns add NAME`, another tool, the old scripts), which Up must not
// adopt and Down must not delete. The state alone would miss an Up
// killed between making the namespace and the runner saving its result.
// It lives beside the locks: /run/netns is one for the whole host, and
// so are the marks.
func madeMark(name string) string { return filepath.Join(lockDir, ".net-veth", name) }

func markMade(name string) error {
	path := madeMark(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, nil, 0o600)
}

func unmarkMade(name string) error {
	if err := os.Remove(madeMark(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func markedMade(name string) bool {
	_, err := os.Lstat(madeMark(name))
	return err == nil
}

// createNetns makes a new network namespace and pins it at path with a
// bind mount, the way `ip netns add` does. The unshare happens on a
// thread that dies afterwards, so no goroutine ever runs inside the new
// namespace by accident.
func createNetns(path string) error {
	if err := prepareNetnsDir(); err != nil {
		return err
	}
	return onThrowawayThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare network namespace: %w", err)
		}
		return nsfs.Pin("/proc/thread-self/ns/net", path)
	})
}

// deleteNetns unpins a named network namespace as `ip netns del` does.
func deleteNetns(path string) error { return nsfs.Unpin(path) }
