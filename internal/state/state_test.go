package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subhost/subhost/internal/stopreq"
	"github.com/subhost/subhost/sdk"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	d := Dir{Root: t.TempDir(), Name: "web1"}
	if _, err := d.Load(); !errors.Is(err, ErrNoState) {
		t.Fatalf("Load before Save: %v", err)
	}
	want := &State{Name: "web1", Pipeline: "pretend-boot", Status: Running,
		Record: sdk.BootRecord{Root: "/opt/sub/web1/live", GuestPID: 42},
		Stages: []Stage{{Name: "mount-loop", Status: StageUp, State: []byte(`{"x":1}`)}}}
	if err := d.Save(want); err != nil {
		t.Fatal(err)
	}
	got, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got.Schema != Schema || got.Record.GuestPID != 42 || string(got.Stages[0].State) != `{"x":1}` {
		t.Errorf("loaded %+v", got)
	}
	// No temporary file is left beside it.
	entries, _ := os.ReadDir(filepath.Join(d.Root, d.Name))
	if len(entries) != 1 {
		t.Errorf("directory holds %v", entries)
	}
	if names, _ := List(d.Root); len(names) != 1 || names[0] != "web1" {
		t.Errorf("List: %v", names)
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Load(); !errors.Is(err, ErrNoState) {
		t.Errorf("Load after Remove: %v", err)
	}
}

// The front reads a state's supervisor, boot and guest timeout through
// stopreq, without this package: the names are the same.
func TestStopReadsTheSupervisor(t *testing.T) {
	d := Dir{Root: t.TempDir(), Name: "web1"}
	st := &State{Name: "web1", Status: Running, Supervisor: 4242, SupervisorStartTime: 31337,
		Record: sdk.BootRecord{GuestStopTimeoutMS: 90000}}
	if err := d.Save(st); err != nil {
		t.Fatal(err)
	}
	got, err := stopreq.ReadSupervised(d.statePath())
	if err != nil {
		t.Fatal(err)
	}
	if got.Supervisor != 4242 || got.SupervisorStartTime != 31337 || got.BootID != st.BootID || got.Record.GuestStopTimeoutMS != 90000 {
		t.Errorf("stopreq read %+v from %+v", got, st)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	d := Dir{Root: t.TempDir(), Name: "x"}
	os.MkdirAll(filepath.Join(d.Root, "x"), 0o700)
	os.WriteFile(d.statePath(), []byte(fmt.Sprintf(`{"schema": %d}`, Schema+1)), 0o600)
	if _, err := d.Load(); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Load of a newer schema: %v", err)
	}
}

func TestLockIsExclusiveAndNamesTheHolder(t *testing.T) {
	d := Dir{Root: t.TempDir(), Name: "x"}
	l, err := d.TryLock("run")
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.TryLock("stop")
	if want := fmt.Sprintf(`subhost "x" is busy: pid %d (run) holds its lock`, os.Getpid()); !errors.Is(err, ErrBusy) || err.Error() != want {
		t.Errorf("second lock: %v, want %q", err, want)
	}
	l.SetOperation("supervise")
	if h, _ := d.Holder(); h.Operation != "supervise" || h.PID != os.Getpid() {
		t.Errorf("holder %+v", h)
	}
	// The operation is written over the old one in place: a shorter one
	// leaves no tail, and a reader between the write and the cut reads
	// the first line only.
	l.SetOperation("run")
	lockFile := filepath.Join(d.Root, "x", "lock")
	if b, _ := os.ReadFile(lockFile); string(b) != fmt.Sprintf("%d run\n", os.Getpid()) {
		t.Errorf("lock file holds %q after a shorter operation", b)
	}
	if err := os.WriteFile(lockFile, []byte("12 run\nervise\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if h, _ := d.Holder(); h.Operation != "run" || h.PID != 12 {
		t.Errorf("holder of a lock file caught between write and cut: %+v", h)
	}
	// Released without state, the subhost leaves no directory behind,
	// nor the temporary file of a save cut short by a kill.
	d.WriteStopRequest(StopRequest{TimeoutMS: 5})
	if err := os.WriteFile(filepath.Join(d.Root, "x", ".state.json.tmp-123"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.Release()
	if _, err := os.Stat(filepath.Join(d.Root, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory left after release: %v", err)
	}
	// Released with state, the directory and the state stay.
	l, err = d.TryLock("run")
	if err != nil {
		t.Fatal(err)
	}
	d.Save(&State{Name: "x"})
	l.Release()
	if _, err := d.Load(); err != nil {
		t.Errorf("state lost at release: %v", err)
	}
}

func TestStopRequestIsTakenOnce(t *testing.T) {
	d := Dir{Root: t.TempDir(), Name: "x"}
	os.MkdirAll(filepath.Join(d.Root, "x"), 0o700)
	if _, ok := d.TakeStopRequest(); ok {
		t.Fatal("a request out of nowhere")
	}
	d.WriteStopRequest(StopRequest{TimeoutMS: 1500, Force: true})
	r, ok := d.TakeStopRequest()
	if !ok || r.TimeoutMS != 1500 || !r.Force {
		t.Errorf("got %+v %v", r, ok)
	}
	if _, ok := d.TakeStopRequest(); ok {
		t.Errorf("taken twice")
	}
}

// TestOthers: every other subhost's name, status and interfaces, as
// Load reads them; not self, not a stopped one, not one whose state
// cannot be read or is of a newer schema.
func TestOthers(t *testing.T) {
	root := t.TempDir()
	save := func(st *State) {
		t.Helper()
		if err := (Dir{Root: root, Name: st.Name}).Save(st); err != nil {
			t.Fatal(err)
		}
	}
	ifs := []sdk.Interface{{HostName: "web0", GuestName: "eth0", MAC: "06:00:00:00:00:01", Bridge: "br0"}}
	save(&State{Name: "self", Status: Running})
	save(&State{Name: "web", Status: Running, Record: sdk.BootRecord{Interfaces: ifs},
		Stages: []Stage{{Name: "net-veth", Status: StageUp, Result: sdk.BootRecord{Interfaces: ifs}}}})
	save(&State{Name: "idle", Status: Hibernating})
	save(&State{Name: "gone", Status: Stopped})
	for name, content := range map[string]string{"broken": "{", "future": fmt.Sprintf(`{"schema": %d, "status": "running"}`, Schema+1)} {
		os.MkdirAll(filepath.Join(root, name), 0o700)
		os.WriteFile(filepath.Join(root, name, "state.json"), []byte(content), 0o600)
	}
	got := Others(root, "self")
	var summary []string
	for _, n := range got {
		summary = append(summary, fmt.Sprintf("%s %s %v", n.Name, n.Status, n.Interfaces))
	}
	want := []string{"idle hibernating []", "web running [" + fmt.Sprint(ifs[0]) + "]"}
	if strings.Join(summary, "; ") != strings.Join(want, "; ") {
		t.Errorf("Others:\n got %q\nwant %q", summary, want)
	}
	// What Load reads, for each one listed.
	for _, n := range got {
		st, err := (Dir{Root: root, Name: n.Name}).Load()
		if err != nil || st.Status != n.Status || fmt.Sprint(st.Record.Interfaces) != fmt.Sprint(n.Interfaces) {
			t.Errorf("%s: Others says %+v, Load %+v (%v)", n.Name, n, st, err)
		}
	}
}

// A release that removes the subhost's directory (no state) while
// another process takes the lock: the other gets the lock or is told it
// is busy, never that the lock file does not exist.
func TestLockRacingARelease(t *testing.T) {
	d := Dir{Root: t.TempDir(), Name: "x"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			if l, err := d.TryLock("run"); err == nil {
				l.Release()
			}
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
		}
		l, err := d.TryLock("stop")
		if err == nil {
			l.Release()
		} else if !errors.Is(err, ErrBusy) {
			t.Errorf("lock during a release: %v", err)
			<-done // before the test's directory goes
			return
		}
	}
}

// Busy sees a lock another open file holds, and takes none itself: a
// TryLock at the same moment (a stop, while a list runs) never fails
// because of it.
func TestBusyTakesNoLock(t *testing.T) {
	d := Dir{Root: t.TempDir(), Name: "probe"}
	l, err := d.TryLock("run")
	if err != nil {
		t.Fatal(err)
	}
	if h, busy := d.Busy(); !busy || h.PID != os.Getpid() || h.Operation != "run" {
		t.Errorf("Busy while locked: %+v %v", h, busy)
	}
	l.Release()
	if _, busy := d.Busy(); busy {
		t.Error("Busy after the release")
	}
	if err := os.MkdirAll(filepath.Join(d.Root, d.Name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.Root, d.Name, "lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				d.Busy()
			}
		}
	}()
	defer close(stop)
	for i := 0; i < 2000; i++ {
		l, err := d.TryLock("stop")
		if err != nil {
			t.Fatalf("TryLock %d while Busy probes: %v", i, err)
		}
		l.lock.Unlock() // keep the file: Release would remove it
		l.lock.Close()
	}
}
