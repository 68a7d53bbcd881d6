package guestexec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk/stagetest"
)

// TestOpenGuestPTY: a devpts ptmx (the host's own, with / as the root)
// gives a pty pair.
func TestOpenGuestPTY(t *testing.T) {
	stagetest.RequireRoot(t)
	root, err := os.Open("/")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	m, s, err := OpenGuestPTY(root)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	s.Close()
}

// TestOpenGuestPTYChecksBeforeOpening: a guest's dev/pts/ptmx that is a
// symlink to something else (a watchdog, in the attack; here a file
// watched with inotify, which sees every open) is refused without being
// opened.
func TestOpenGuestPTYChecksBeforeOpening(t *testing.T) {
	stagetest.RequireRoot(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "device")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "dev/pts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/device", filepath.Join(dir, "dev/pts/ptmx")); err != nil {
		t.Fatal(err)
	}
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, target, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	root, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	_, _, err = OpenGuestPTY(root)
	if err == nil || !strings.Contains(err.Error(), "not a devpts ptmx") {
		t.Errorf("a file as ptmx: %v, want refused", err)
	}
	buf := make([]byte, 4096)
	if n, _ := unix.Read(in, buf); n > 0 {
		t.Error("the file was opened")
	}
}
