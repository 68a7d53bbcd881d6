package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subhost/subhost/internal/proc"
)

// earlierBootID is a boot ID no kernel of this host has had.
const earlierBootID = "00000000-0000-4000-8000-000000000000"

// A subhost's state that survived a reboot of the host (its /run is not a
// tmpfs) describes nothing that exists, and names processes by numbers
// the new boot gives to others. The commands treat it as a tmpfs would
// have left it: status says stopped and why, stop signals nothing and
// runs no Down, and run boots afresh.
func TestStateFromBeforeAHostReboot(t *testing.T) {
	if _, err := os.Stat("/proc/sys/kernel/random/boot_id"); err != nil {
		t.Skip("no boot ID on this kernel")
	}
	c := newCLI(t)
	c.writePipeline([]string{"a", "b"}, nil)
	if out, stderr, code := c.run("run", "--pipeline", "p", "web"); code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, out, stderr)
	}

	// The host "reboots": the state stays, and a process of the new boot
	// has the PID and start time its supervisor had.
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	start, err := proc.StartTime(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.states, "web", "state.json")
	var st map[string]any
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	st["boot_id"], st["supervisor"], st["supervisor_start_time"] = earlierBootID, other.Process.Pid, start
	data, _ = json.Marshal(st)
	os.WriteFile(path, data, 0o600)
	os.WriteFile(filepath.Join(c.states, ".boot_id"), []byte(earlierBootID+"\n"), 0o600)

	out, _, _ := c.run("status", "web")
	if !strings.HasPrefix(out, "web: stopped") || !strings.Contains(out, "before the host rebooted") {
		t.Errorf("status of a state from before the reboot:\n%s", out)
	}
	if out, _, _ := c.run("list"); !strings.Contains(out, "web   stopped") {
		t.Errorf("list:\n%s", out)
	}
	if out, stderr, code := c.run("stop", "web"); code != 0 {
		t.Fatalf("stop: exit %d\n%s%s", code, out, stderr)
	}
	if !proc.Alive(other.Process.Pid, start) {
		t.Error("stop signalled the process that has the earlier boot's supervisor's PID and start time")
	}
	if downs := c.calls("down"); len(downs) != 0 {
		t.Errorf("stop ran Down for %v: nothing of the earlier boot exists", downs)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the earlier boot's state is still there (%v)", err)
	}
	if b, _ := os.ReadFile(filepath.Join(c.states, ".boot_id")); strings.TrimSpace(string(b)) == earlierBootID {
		t.Error("the state root still records the earlier boot")
	}

	if out, stderr, code := c.run("run", "--pipeline", "p", "web"); code != 0 {
		t.Fatalf("run after the reboot: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := c.run("stop", "web"); code != 0 {
		t.Fatalf("stop: exit %d\n%s%s", code, out, stderr)
	}
	if got := strings.Join(c.calls("down"), ","); got != "b,a" {
		t.Errorf("down calls after the new boot's run and stop: %s", got)
	}
	if _, err := os.Stat(filepath.Join(c.states, "web")); !os.IsNotExist(err) {
		t.Errorf("state left (%v)", err)
	}
}
