package cgroups

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// Delegate chowns the guest's cgroup and the files that move processes
// and enable controllers, and nothing above it (a scratch tree stands in
// for the cgroup file systems).
func TestDelegate(t *testing.T) {
	stagetest.RequireRoot(t) // chown
	dir := t.TempDir()
	guest := filepath.Join(dir, "NAME", "guest")
	if err := os.MkdirAll(guest, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"NAME/cgroup.procs", "NAME/guest/cgroup.procs", "NAME/guest/cgroup.subtree_control", "NAME/guest/memory.max"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := Delegate([]sdk.Cgroup{{Hierarchy: "cgroup2", Dir: filepath.Join(dir, "NAME"), Guest: guest}}, 700000, 700000); err != nil {
		t.Fatal(err)
	}
	owner := func(rel string) uint32 {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir, rel), &st); err != nil {
			t.Fatal(err)
		}
		return st.Uid
	}
	for rel, want := range map[string]uint32{
		"NAME/guest": 700000, "NAME/guest/cgroup.procs": 700000, "NAME/guest/cgroup.subtree_control": 700000,
		"NAME/guest/memory.max": 0, "NAME": 0, "NAME/cgroup.procs": 0,
	} {
		if got := owner(rel); got != want {
			t.Errorf("%s owned by %d, want %d", rel, got, want)
		}
	}
}
