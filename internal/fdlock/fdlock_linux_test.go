package fdlock

import (
	"os"
	"path/filepath"
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
