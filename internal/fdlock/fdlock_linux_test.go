package fdlock

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A second open file waits for the first's lock, and gets it once the
// first is closed.
func TestExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	open := func() *os.File {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a, b := open(), open()
	defer b.Close()
	if err := Exclusive(a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(b.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != unix.EWOULDBLOCK {
		t.Fatalf("a second lock while the first is held: %v, want EWOULDBLOCK", err)
	}
	got := make(chan error, 1)
	go func() { got <- Exclusive(b) }()
	select {
	case err := <-got:
		t.Fatalf("the second lock came while the first was held: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	a.Close()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// Named locks exclude each other, also while each release removes the
// file that later callers are waiting on, and the last release leaves no
// file behind.
func TestNamed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "locks")
	path := filepath.Join(dir, "x.lock")
	var mu sync.Mutex
	inside := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				release, err := Named(path)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				n := inside
				mu.Unlock()
				if n != 1 {
					t.Errorf("%d holders of the lock at once", n)
				}
				time.Sleep(10 * time.Microsecond)
				mu.Lock()
				inside--
				mu.Unlock()
				release()
			}
		}()
	}
	wg.Wait()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("lock file left behind: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Errorf("lock directory mode %v, want 0700", fi.Mode().Perm())
	}
}

// Named refuses a symlink at path rather than lock (and later remove)
// what it names.
func TestNamedSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "x.lock")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if release, err := Named(path); err == nil {
		release()
		t.Fatal("locked through a symlink")
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("the symlink's target: %v", err)
	}
}

// RemoveIfFree takes away a lock file a killed holder left, but not one
// held now, nor what a symlink names.
func TestRemoveIfFree(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.lock")
	release, err := Named(path)
	if err != nil {
		t.Fatal(err)
	}
	if RemoveIfFree(path) {
		t.Error("removed a lock file whose lock is held")
	}
	release()
	// A holder killed before its release: the file stays, unlocked.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !RemoveIfFree(path) {
		t.Error("a free lock file was not removed")
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("lock file still there: %v", err)
	}
	if RemoveIfFree(path) {
		t.Error("removed a missing file")
	}
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if RemoveIfFree(path) {
		t.Error("removed a symlink")
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("the symlink's target: %v", err)
	}
}
