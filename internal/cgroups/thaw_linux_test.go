package cgroups

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/sdk/stagetest"
)

// TestThawLetsAFrozenGuestDie: a guest that froze its own cgroup would not
// die of SIGKILL; Thaw, which Down calls first, lets it.
func TestThawLetsAFrozenGuestDie(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	needDevices(t)
	name := testName(t)
	p, err := Setup(name, "", Defaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(name, "", nil) })
	var freezer string
	hs, _ := hierarchies()
	for _, h := range hs {
		if h.mount != "" && h.has("freezer") {
			freezer = h.guestDir(name)
		}
	}
	if freezer == "" {
		t.Skip("no v1 freezer hierarchy the guest is placed in")
	}
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sleep.Wait() }()
	defer sleep.Process.Kill()
	for _, d := range GuestDirs(p.Cgroups) {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(sleep.Process.Pid)), 0); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(freezer, "freezer.state")
	if err := os.WriteFile(state, []byte("FROZEN"), 0); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(state)
		if strings.TrimSpace(string(b)) == "FROZEN" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never froze: %s", b)
		}
	}
	sleep.Process.Kill()
	if err := Thaw(dirsOf(p)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(state); strings.TrimSpace(string(b)) != "THAWED" {
		t.Errorf("freezer.state after Thaw: %s", b)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the killed process did not die after Thaw")
	}
	if err := Remove(name, "", nil); err != nil {
		t.Errorf("Remove: %v", err)
	}
	if err := Thaw(dirsOf(p)); err != nil {
		t.Errorf("Thaw with nothing there: %v", err)
	}
}
