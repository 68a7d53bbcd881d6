package pluginhost

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// deadPID is the PID of a process that has ended and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

// socketAt binds a unix socket at path; listening, it stays open until
// the test ends, otherwise it is closed at once and its file left behind,
// as a plugin killed with SIGKILL leaves it.
func socketAt(t *testing.T, path string, listening bool) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	if listening {
		t.Cleanup(func() { l.Close() })
		return
	}
	l.Close()
}

func TestSweepSocketsTakesOnlyDeadPluginsSockets(t *testing.T) {
	dir := t.TempDir()
	dead, self := deadPID(t), os.Getpid()
	old := time.Now().Add(-2 * staleAfter)
	names := map[string]struct {
		pid       int
		listening bool
		young     bool
		file      bool // a regular file, not a socket
		taken     bool
	}{
		"dead plugin's":                {pid: dead, taken: true},
		"live plugin's":                {pid: self},
		"dead PID, but served":         {pid: dead, listening: true},
		"dead plugin's, but just made": {pid: dead, young: true},
		"not a socket":                 {pid: dead, file: true},
	}
	paths := map[string]string{}
	for what, c := range names {
		p := filepath.Join(dir, fmt.Sprintf("plugin%d-%08x", c.pid, len(paths)))
		paths[what] = p
		if c.file {
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		} else {
			socketAt(t, p, c.listening)
		}
		if !c.young {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Not a plugin's name: whatever else is there stays.
	other := filepath.Join(dir, "console.sock")
	socketAt(t, other, false)
	if err := os.Chtimes(other, old, old); err != nil {
		t.Fatal(err)
	}

	if n := SweepSockets(dir, time.Now()); n != 1 {
		t.Errorf("removed %d, want 1", n)
	}
	for what, c := range names {
		_, err := os.Lstat(paths[what])
		if gone := os.IsNotExist(err); gone != c.taken {
			t.Errorf("%s socket: removed %v, want %v (%v)", what, gone, c.taken, err)
		}
	}
	if _, err := os.Lstat(other); err != nil {
		t.Errorf("a socket with another name was removed: %v", err)
	}
	if n := SweepSockets(filepath.Join(dir, "missing"), time.Now()); n != 0 {
		t.Errorf("a missing directory: removed %d", n)
	}
}

func TestSocketPID(t *testing.T) {
	for name, want := range map[string]int{
		"plugin123-0a1b2c3d": 123,
		"plugin123-0a1b2c3":  0, // seven digits
		"plugin123-0a1b2c3g": 0,
		"plugin-0a1b2c3d":    0,
		"plugin0-0a1b2c3d":   0,
		"plugin12":           0,
		"xplugin1-0a1b2c3d":  0,
	} {
		got, ok := socketPID(name)
		if ok != (want != 0) || got != want && want != 0 {
			t.Errorf("socketPID(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}
