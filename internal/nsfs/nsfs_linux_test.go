package nsfs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/testguest"
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

// scratchTmpfs mounts a tmpfs on a new temporary directory, private so
// that nothing made shared below it propagates to the host's mounts, and
// unmounts it when the test ends.
func scratchTmpfs(t *testing.T) string {
	t.Helper()
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
	return scratch
}

// TestSharedDirConcurrent calls SharedDir from many goroutines at once on
// directories that are not mount points yet, as subhosts booted together
// on a fresh host do on /run/netns: each directory ends as exactly one
// shared mount, never two stacked ones. The directories are on a scratch
// tmpfs.
func TestSharedDirConcurrent(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	scratch, locks := scratchTmpfs(t), t.TempDir()
	for round := 0; round < 20; round++ {
		dir := filepath.Join(scratch, fmt.Sprint("netns", round))
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = SharedDir(dir, locks)
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
		if err := SharedDir(dir, locks); err != nil {
			t.Fatalf("SharedDir again: %v", err)
		}
		if m := mountsAt(t, dir); len(m) != 1 {
			t.Fatalf("SharedDir again: %d mounts on %s, want 1", len(m), dir)
		}
	}
}

// TestSharedDirLockedByAUser: an unprivileged user holding a flock on the
// directory (as `setpriv --reuid=65534 flock /run/netns sleep 1d` can on
// the 0755 /run/netns) does not hold up SharedDir, whose lock is a file
// only root can open.
func TestSharedDirLockedByAUser(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	scratch, locks := scratchTmpfs(t), t.TempDir()
	// Let uid 65534 reach the directory, as any user reaches /run/netns.
	if err := os.Chmod(filepath.Dir(scratch), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(scratch, "netns")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kill := testguest.FlockAs(t, dir, 65534)

	done := make(chan error, 1)
	go func() { done <- SharedDir(dir, locks) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("SharedDir: %v", err)
		}
	case <-time.After(5 * time.Second):
		kill() // lets it finish, so that the test leaves nothing
		<-done
		t.Fatalf("SharedDir waited 5 s for the flock uid 65534 holds on %s", dir)
	}
	if m := mountsAt(t, dir); len(m) != 1 || !strings.Contains(m[0], " shared:") {
		t.Errorf("%s after SharedDir: %q, want one shared mount", dir, m)
	}
	if entries, err := os.ReadDir(locks); err != nil || len(entries) != 0 {
		t.Errorf("lock directory after SharedDir: %v, %v; want it empty", entries, err)
	}
}
