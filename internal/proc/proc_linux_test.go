package proc

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startSleep starts a child that sleeps until the test ends (it is
// killed and reaped then), and returns it with its start time.
func startSleep(t *testing.T) (*exec.Cmd, uint64) {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	st, err := StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, st
}

func TestOpenChecksTheStartTime(t *testing.T) {
	cmd, st := startSleep(t)
	if _, err := Open(cmd.Process.Pid, st+1); err != ErrGone {
		t.Errorf("Open with another start time: %v, want ErrGone", err)
	}
	if !Alive(cmd.Process.Pid, st) {
		t.Fatal("not alive")
	}
	p, err := Open(cmd.Process.Pid, st)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Exited() || p.WaitExit(50*time.Millisecond) {
		t.Fatal("exited early")
	}
	if err := p.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !p.WaitExit(5 * time.Second) {
		t.Fatal("did not see the exit")
	}
}

func TestStartTimeOfSelfAndGone(t *testing.T) {
	if st, err := StartTime(os.Getpid()); err != nil || st == 0 {
		t.Errorf("own start time: %d %v", st, err)
	}
	if _, err := StartTime(1 << 30); err != ErrGone {
		t.Errorf("a pid that cannot exist: %v", err)
	}
}

// TestAge: a process started now is a fraction of a second old (the
// start times have 10 ms steps), and this test's own process is older
// than one started after it.
func TestAge(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	child, err := StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	self, err := StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if age := Age(child); age < -20*time.Millisecond || age > 5*time.Second {
		t.Errorf("a process started just now is %v old", age)
	}
	if Age(self) < Age(child) {
		t.Errorf("this process (%v) is younger than its child (%v)", Age(self), Age(child))
	}
}

func TestStopped(t *testing.T) {
	cmd, st := startSleep(t)
	p, err := Open(cmd.Process.Pid, st)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Stopped() {
		t.Error("a running process reported stopped")
	}
	// The state changes once the signal is handled: poll for it.
	seen := func(want bool) bool {
		for range 100 {
			if p.Stopped() == want {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}
	p.Signal(unix.SIGSTOP)
	if !seen(true) {
		t.Error("a process sent SIGSTOP never reported stopped")
	}
	p.Signal(unix.SIGCONT)
	if !seen(false) {
		t.Error("a continued process still reported stopped")
	}
	p.Signal(unix.SIGKILL)
	p.WaitExit(5 * time.Second)
	if p.Stopped() {
		t.Error("a process that is gone reported stopped")
	}
}
