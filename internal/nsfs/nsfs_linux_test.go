package nsfs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk/stagetest"
)

// mountsAt lists the mountinfo lines of the mounts on dir.
func mountsAt(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == dir {
			out = append(out, sc.Text())
		}
	}
	return out
}

// TestSharedDirConcurrent calls SharedDir from many goroutines at once on
// directories that are not mount points yet, as subhosts booted together
// on a fresh host do on /run/netns: each directory ends as exactly one
// shared mount, never two stacked ones. The directories are on a scratch
// tmpfs.
func TestSharedDirConcurrent(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	scratch := t.TempDir()
	if err := unix.Mount("tmpfs", scratch, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(scratch, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount the scratch tmpfs: %v", err)
		}
	})
	// Its own peer group: nothing made shared below propagates to the
	// host's mounts.
	if err := unix.Mount("", scratch, "", unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 20; round++ {
		dir := filepath.Join(scratch, fmt.Sprint("netns", round))
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = SharedDir(dir)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("SharedDir %s: %v", dir, err)
			}
		}
		m := mountsAt(t, dir)
		if len(m) != 1 {
			t.Fatalf("round %d: %d mounts on %s after 8 SharedDir at once, want 1: %q", round, len(m), dir, m)
		}
		if !strings.Contains(m[0], " shared:") {
			t.Fatalf("round %d: %s is not a shared mount: %s", round, dir, m[0])
		}
		if err := SharedDir(dir); err != nil {
			t.Fatalf("SharedDir again: %v", err)
		}
		if m := mountsAt(t, dir); len(m) != 1 {
			t.Fatalf("SharedDir again: %d mounts on %s, want 1", len(m), dir)
		}
	}
}
