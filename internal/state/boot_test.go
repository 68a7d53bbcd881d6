package state

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/subhost/subhost/sdk"
)

// earlierBootID is a boot ID no kernel of this host has had.
const earlierBootID = "00000000-0000-4000-8000-000000000000"

// rewriteBootID makes the saved state of d look saved by another boot.
func rewriteBootID(t *testing.T, d Dir, id string) {
	t.Helper()
	data, err := os.ReadFile(d.statePath())
	if err != nil {
		t.Fatal(err)
	}
	now := `"boot_id":"` + bootID() + `"`
	if !strings.Contains(string(data), now) {
		t.Fatalf("the saved state has no %s: %s", now, data)
	}
	data = []byte(strings.Replace(string(data), now, `"boot_id":"`+id+`"`, 1))
	if err := os.WriteFile(d.statePath(), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func needBootID(t *testing.T) {
	t.Helper()
	if bootID() == "" {
		t.Skip("this kernel has no /proc/sys/kernel/random/boot_id")
	}
}

// A state saved before the host's last reboot names processes by PIDs
// and start times that this boot may have given to others: Load forgets
// them, and says so; its neighbours do not see it.
func TestStateOfAnEarlierBootForgetsItsProcesses(t *testing.T) {
	needBootID(t)
	root := t.TempDir()
	d := Dir{Root: root, Name: "web"}
	self := os.Getpid()
	st := &State{Name: "web", Status: Running, Supervisor: self, SupervisorStartTime: 7,
		Record: sdk.BootRecord{GuestPID: self, GuestStartTime: 8,
			Interfaces: []sdk.Interface{{HostName: "web0", GuestName: "eth0", MAC: "06:00:00:00:00:01", Bridge: "br0"}}},
		Stages: []Stage{{Name: "init", Status: StageUp, Result: sdk.BootRecord{GuestPID: self, GuestStartTime: 8}}}}
	if err := d.Save(st); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Load(); err != nil || got.FromEarlierBoot || got.Supervisor != self || got.Record.GuestPID != self {
		t.Fatalf("this boot's state loads as %+v (%v)", got, err)
	}
	if others := Others(root, "self"); len(others) != 1 {
		t.Fatalf("Others of this boot's state: %v", others)
	}

	rewriteBootID(t, d, earlierBootID)
	got, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !got.FromEarlierBoot {
		t.Error("Load does not say the state is from an earlier boot")
	}
	if got.Supervisor != 0 || got.SupervisorStartTime != 0 || got.Record.GuestPID != 0 || got.Record.GuestStartTime != 0 || got.Stages[0].Result.GuestPID != 0 {
		t.Errorf("the earlier boot's processes are still named: %+v", got)
	}
	if others := Others(root, "self"); len(others) != 0 {
		t.Errorf("Others lists a subhost of an earlier boot: %v", others)
	}
	// Saved again, it is this boot's (with the processes forgotten).
	if err := d.Save(got); err != nil {
		t.Fatal(err)
	}
	if again, err := d.Load(); err != nil || again.FromEarlierBoot || again.BootID != bootID() {
		t.Errorf("saved again: %+v (%v)", again, err)
	}
}

// A state written by a subhost that recorded no boot ID is this boot's,
// as it always was.
func TestStateWithoutBootIDIsThisBoots(t *testing.T) {
	d := Dir{Root: t.TempDir(), Name: "old"}
	os.MkdirAll(d.path(), 0o700)
	os.WriteFile(d.statePath(), []byte(`{"schema":1,"name":"old","status":"running","supervisor":12,"record":{"guest_pid":34}}`), 0o600)
	st, err := d.Load()
	if err != nil || st.FromEarlierBoot || st.Supervisor != 12 || st.Record.GuestPID != 34 {
		t.Errorf("loaded %+v (%v)", st, err)
	}
}

// layRoot fills root as subhosts leave it: a subhost's directory and
// the stages' own files, with the given boot ID ("" for none).
func layRoot(t *testing.T, root, id string) {
	t.Helper()
	for _, f := range []string{"web/state.json", "web/lock", ".init/web.0123.json", ".net-veth/web", ".plugins/plugin1-00000001"} {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if id != "" {
		if err := os.WriteFile(filepath.Join(root, bootIDFile), []byte(id+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func entries(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

func recordedBootID(t *testing.T, root string) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(root, bootIDFile))
	return strings.TrimSpace(string(b))
}

// The first lock taken after the host rebooted empties a state root that
// survived the reboot (its /run is not a tmpfs), as a tmpfs would have
// been; later ones, and roots of this boot, are left as they are.
func TestLockEmptiesARootLeftByAnEarlierBoot(t *testing.T) {
	needBootID(t)
	root := t.TempDir()
	layRoot(t, root, earlierBootID)
	l, err := Dir{Root: root, Name: "db"}.TryLock("run")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if got, want := entries(t, root), []string{bootIDFile, "db/lock"}; !slices.Equal(got, want) {
		t.Errorf("after the first lock of a new boot, the root holds %q, want %q", got, want)
	}
	if got := recordedBootID(t, root); got != bootID() {
		t.Errorf("recorded boot ID %q, want %q", got, bootID())
	}

	// From now on, it is this boot's root: kept.
	layRoot(t, root, "")
	before := entries(t, root)
	l2, err := Dir{Root: root, Name: "web2"}.TryLock("run")
	if err != nil {
		t.Fatal(err)
	}
	l2.Release()
	if got := entries(t, root); !slices.Equal(got, before) {
		t.Errorf("a root of this boot changed: %q, was %q", got, before)
	}
}

// A root without a recorded boot ID was made by a subhost that did not
// record one, whose subhosts may be running now: it is kept, and this
// boot's ID recorded.
func TestLockKeepsARootWithoutBootID(t *testing.T) {
	needBootID(t)
	root := t.TempDir()
	layRoot(t, root, "")
	before := entries(t, root)
	l, err := Dir{Root: root, Name: "web"}.TryLock("stop")
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	got := entries(t, root)
	if want := append(append([]string{}, bootIDFile), before...); !slices.Equal(got, want) {
		t.Errorf("root holds %q, want %q", got, want)
	}
	if got := recordedBootID(t, root); got != bootID() {
		t.Errorf("recorded boot ID %q, want %q", got, bootID())
	}
}

// A root from an earlier boot that holds a state without a boot ID (a
// subhost booted since by a subhost that records none) is kept whole:
// that subhost may be running, its files among the rest.
func TestLockKeepsAnEarlierRootWithAStateOfThisBoot(t *testing.T) {
	needBootID(t)
	root := t.TempDir()
	layRoot(t, root, earlierBootID)
	os.WriteFile(filepath.Join(root, "web", "state.json"), []byte(`{"schema":1,"name":"web","status":"running"}`), 0o600)
	before := entries(t, root)
	l, err := Dir{Root: root, Name: "web"}.TryLock("stop")
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	if got := entries(t, root); !slices.Equal(got, before) {
		t.Errorf("root holds %q, was %q", got, before)
	}
	if got := recordedBootID(t, root); got != bootID() {
		t.Errorf("recorded boot ID %q, want %q", got, bootID())
	}
}
