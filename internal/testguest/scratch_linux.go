package testguest

import (
	"testing"

	"golang.org/x/sys/unix"
)

// Scratch mounts a fresh tmpfs on a t.TempDir and returns its path: a
// filesystem a guest may remount or fill without touching the host's
// root filesystem. It is unmounted when the test ends (before the
// directory is removed: cleanups run last-registered first).
func Scratch(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("scratch", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=256m"); err != nil {
		t.Fatalf("testguest: tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("testguest: unmount scratch %s: %v", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}
