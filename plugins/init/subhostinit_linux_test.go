package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/guestexit"
	"github.com/subhost/subhost/internal/testbin"
	"github.com/subhost/subhost/sdk/stagetest"
)

// TestBootWithSubhostInit boots a busybox guest with the real
// subhost-init (cmd/subhost-init): rcS and rc 2 run, Down powers it off
// through rc 0, and PID 1 ends as a power off.
func TestBootWithSubhostInit(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	initBin := testbin.MustBuild(t, "subhost-init", "./cmd/subhost-init")

	root := scratchRoot(t, "")
	if err := os.MkdirAll(filepath.Join(root, "etc/init.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	scripts := map[string]string{
		"etc/init.d/rcS": "#!/bin/sh\nhostname >/rcs-ran\n",
		"etc/init.d/rc":  "#!/bin/sh\necho \"$1 $container\" >>/rc-levels\n",
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	req := guestRequest(t, root, map[string]string{"init_binary": initBin, "shutdown_timeout": "10s"})
	res := upGuest(t, &stage{}, req)
	waitFile(t, filepath.Join(root, "rc-levels"), "2 subhost\n")
	if b, _ := os.ReadFile(filepath.Join(root, "rcs-ran")); string(b) != "tguest\n" {
		t.Errorf("rcS saw hostname %q, want tguest", b)
	}

	req.State = res.State
	start := time.Now()
	if err := (&stage{}).Down(ctx(t), req); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("Down took %v", took)
	}
	ws, _ := reap(t, res.Record.GuestPID, 5*time.Second)
	if got := guestexit.Classify(syscall.WaitStatus(ws)); got != guestexit.PowerOff {
		t.Errorf("guest ended with %s, want a power off", guestexit.Describe(syscall.WaitStatus(ws)))
	}
	waitFile(t, filepath.Join(root, "rc-levels"), "2 subhost\n0 subhost\n")
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if string(b) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q, want %q", path, b, want)
		}
		if !strings.HasPrefix(want, string(b)) {
			t.Fatalf("%s holds %q, want %q", path, b, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
