package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/launcher"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// recordOf reads the launch record of req's subhost, failing the test
// when there is none.
func recordOf(t *testing.T, req *sdk.Request) (string, launchRecord) {
	t.Helper()
	path, err := launchRecordPath(req.Subhost)
	if err != nil {
		t.Fatal(err)
	}
	lr, ok := readLaunchRecord(path)
	if !ok {
		t.Fatalf("no launch record at %s", path)
	}
	return path, lr
}

func noRecord(t *testing.T, req *sdk.Request) {
	t.Helper()
	path, err := launchRecordPath(req.Subhost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("launch record %s still there (%v)", path, err)
	}
	if temps, _ := filepath.Glob(path + ".tmp-*"); len(temps) > 0 {
		t.Errorf("temporary records left: %v", temps)
	}
}

// forgotten is req as a runner that lost Up's result sends it: no state,
// and a boot record without the guest (here, without anything).
func forgotten(req *sdk.Request) *sdk.Request {
	r := *req
	r.State = nil
	r.Record = sdk.BootRecord{}
	return &r
}

// TestDownRediscoversGuest: with neither state nor boot record, Down
// finds the guest through the launch record, powers it off and removes
// the record; Check finds it too.
func TestDownRediscoversGuest(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	root := scratchRoot(t, "wait")
	req := guestRequest(t, root, nil)
	res := upGuest(t, &stage{}, req)
	readReport(t, root)
	path, lr := recordOf(t, req)
	if lr.PID != res.Record.GuestPID || lr.StartTime != res.Record.GuestStartTime || lr.Root != root ||
		lr.Name != req.Subhost.Name || lr.Home != req.Subhost.Home {
		t.Errorf("launch record %+v, want pid %d start %d root %q", lr, res.Record.GuestPID, res.Record.GuestStartTime, root)
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil || st.Mode&0o777 != 0o600 || st.Uid != 0 {
		t.Errorf("launch record mode %#o uid %d: %v", st.Mode&0o777, st.Uid, err)
	}
	if err := unix.Lstat(launchDir, &st); err != nil || st.Mode&0o777 != 0o700 {
		t.Errorf("%s mode %#o: %v", launchDir, st.Mode&0o777, err)
	}

	lost := forgotten(req)
	if err := (&stage{}).Check(ctx(t), lost); err != nil {
		t.Errorf("Check with only the launch record: %v", err)
	}
	if err := (&stage{}).Down(ctx(t), lost); err != nil {
		t.Fatalf("Down: %v", err)
	}
	ws, _ := reap(t, res.Record.GuestPID, 5*time.Second)
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("guest ended with %v, want exit 0 after SIGPWR", ws)
	}
	if _, err := os.Stat(filepath.Join(root, "got-sigpwr")); err != nil {
		t.Errorf("the guest did not get SIGPWR: %v", err)
	}
	noRecord(t, req)
	if err := (&stage{}).Check(ctx(t), lost); !sdk.IsKind(err, sdk.KindNotFound) {
		t.Errorf("Check after Down: %v, want not found", err)
	}
	if err := (&stage{}).Down(ctx(t), lost); err != nil {
		t.Errorf("Down again: %v", err)
	}
}

// TestStaleLaunchRecord: a launch record whose PID now belongs to another
// process is never signalled, and Down removes it; a garbage record is
// removed too; Up launches past a stale one and replaces it.
func TestStaleLaunchRecord(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Wait()
	defer other.Process.Kill()
	start, _, err := procStat(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	root := scratchRoot(t, "wait")
	req := guestRequest(t, root, map[string]string{"shutdown_timeout": "1s"})
	path, err := launchRecordPath(req.Subhost)
	if err != nil {
		t.Fatal(err)
	}
	stale := launchRecord{Name: req.Subhost.Name, Home: req.Subhost.Home, PID: other.Process.Pid, StartTime: start + 1, Root: root}

	if err := writeLaunchRecord(path, stale); err != nil {
		t.Fatal(err)
	}
	if err := (&stage{}).Check(ctx(t), forgotten(req)); !sdk.IsKind(err, sdk.KindNotFound) {
		t.Errorf("Check on a stale record: %v, want not found", err)
	}
	if err := (&stage{}).Down(ctx(t), forgotten(req)); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if !alive(other.Process.Pid, start) {
		t.Fatal("Down signalled the process that took over a stale record's PID")
	}
	noRecord(t, req)

	if err := os.MkdirAll(launchDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (&stage{}).Down(ctx(t), forgotten(req)); err != nil {
		t.Fatalf("Down with a garbage record: %v", err)
	}
	noRecord(t, req)

	if err := writeLaunchRecord(path, stale); err != nil {
		t.Fatal(err)
	}
	res := upGuest(t, &stage{}, req)
	if !alive(other.Process.Pid, start) {
		t.Fatal("Up signalled the process that took over a stale record's PID")
	}
	if _, lr := recordOf(t, req); lr.PID != res.Record.GuestPID || lr.StartTime != res.Record.GuestStartTime {
		t.Errorf("launch record %+v after Up, want the new guest %d", lr, res.Record.GuestPID)
	}
	readReport(t, root)
	if err := (&stage{}).Down(ctx(t), forgotten(req)); err != nil {
		t.Fatalf("Down: %v", err)
	}
	reap(t, res.Record.GuestPID, 5*time.Second)
	noRecord(t, req)
}

// TestUpStopsUnrecordedGuest: Up with no state, while a guest that only
// the launch record knows still runs, powers that guest off before it
// boots another, so two guests never share a root.
func TestUpStopsUnrecordedGuest(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	root := scratchRoot(t, "wait")
	req := guestRequest(t, root, nil)
	first := upGuest(t, &stage{}, req)
	readReport(t, root)
	os.Remove(filepath.Join(root, "report.json"))

	// req has no state and a record without the guest: a runner that
	// lost the first Up's result, running again.
	second := upGuest(t, &stage{}, req)
	if second.Record.GuestPID == first.Record.GuestPID {
		t.Fatalf("Up adopted the unrecorded guest %d", first.Record.GuestPID)
	}
	ws, _ := reap(t, first.Record.GuestPID, 5*time.Second)
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("first guest ended with %v, want an orderly power off", ws)
	}
	if _, lr := recordOf(t, req); lr.PID != second.Record.GuestPID {
		t.Errorf("launch record names %d, want the new guest %d", lr.PID, second.Record.GuestPID)
	}
	readReport(t, root)
	after := *req
	after.State = second.State
	if err := (&stage{}).Down(ctx(t), &after); err != nil {
		t.Fatalf("Down: %v", err)
	}
	reap(t, second.Record.GuestPID, 5*time.Second)
	noRecord(t, req)
}

// TestUpCancelled: Up with a context already done starts nothing.
func TestUpCancelled(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	root := scratchRoot(t, "wait")
	req := guestRequest(t, root, nil)
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if res, err := (&stage{}).Up(c, req); err == nil {
		reap(t, res.Record.GuestPID, 10*time.Second)
		t.Fatal("Up with a cancelled context booted a guest")
	}
	if c := children(t); len(c) > 0 {
		t.Errorf("child processes %v", c)
	}
	noRecord(t, req)
}

// TestLaunchFailsAfterStart: whatever fails once the launcher exists (its
// record cannot be written, the launch is cancelled while it sets the
// guest up, the guest root is refused), the launcher is killed and
// reaped, and Up leaves no record.
func TestLaunchFailsAfterStart(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	root := scratchRoot(t, "wait")
	cfg := launcher.Config{Root: root, Hostname: "tguest", Argv: []string{"/sbin/subhost-init"}, Env: []string{}}

	var launcher int
	_, _, err := launch(ctx(t), cfg, &sdk.BootRecord{}, "", &prepared{}, func(pid int, start uint64) error {
		launcher = pid
		if !alive(pid, start) {
			t.Errorf("started called with pid %d start %d, not a live process", pid, start)
		}
		return errors.New("cannot record")
	}, func(int) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "cannot record") {
		t.Errorf("launch with a failing record: %v", err)
	}
	if c := children(t); len(c) > 0 || launcher == 0 {
		t.Errorf("launcher %d: child processes %v left", launcher, c)
	}

	c, cancel := context.WithCancel(ctx(t))
	_, _, err = launch(c, cfg, &sdk.BootRecord{}, "", &prepared{}, func(int, uint64) error {
		cancel() // done before the launcher is even sent its config
		return nil
	}, func(int) error { return nil })
	if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Errorf("cancelled launch: %v", err)
	}
	if c := children(t); len(c) > 0 {
		t.Errorf("a cancelled launch left child processes %v", c)
	}

	symlink(t, t.TempDir(), root, "proc")
	req := guestRequest(t, root, nil)
	if _, err := (&stage{}).Up(ctx(t), req); err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Errorf("Up on a hostile root: %v", err)
	}
	if c := children(t); len(c) > 0 {
		t.Errorf("a refused boot left child processes %v", c)
	}
	noRecord(t, req)
}
