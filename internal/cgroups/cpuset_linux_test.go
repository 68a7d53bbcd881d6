package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subhost/subhost/sdk/stagetest"
)

// TestSetupGivesCpusetsTheirCPUs: a v1 cpuset cgroup starts with no CPU
// and no memory node, and no process can join it so. Setup gives the
// subhost's and the guest's theirs from the parent, without reading the
// cgroups it has just made; and a parent at the fixed place found
// without any (made by a run that ended right after its mkdir) gets its
// own first.
func TestSetupGivesCpusetsTheirCPUs(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	hs, err := hierarchies()
	if err != nil {
		t.Fatal(err)
	}
	var cs *hierarchy
	for i, h := range hs {
		if h.cpuset() && h.mount != "" {
			cs = &hs[i]
		}
	}
	if cs == nil {
		t.Skip("no cgroup v1 cpuset hierarchy on this host")
	}
	top := filepath.Join(cs.base, Dir)
	if ents, err := os.ReadDir(top); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				t.Skipf("%s has subhosts in it (%s): its cpuset cannot be emptied", top, e.Name())
			}
		}
		if err := os.Remove(top); err != nil {
			t.Fatal(err)
		}
	}
	// The parent as a run that ended between its mkdir and its cpuset
	// left it: empty.
	if err := os.Mkdir(top, 0o755); err != nil {
		t.Fatal(err)
	}
	read := func(dir, f string) string {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if read(top, "cpuset.cpus") != "" {
		t.Skip("this host's cpuset root has cgroup.clone_children set: a new cgroup is never empty")
	}
	name := testName(t)
	p, err := Setup(name, "", Defaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Cgroups {
		if c.Hierarchy != cs.name() {
			continue
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			want := read(cs.base, f)
			for _, dir := range []string{top, c.Dir, c.Guest} {
				if got := read(dir, f); got != want {
					t.Errorf("%s/%s is %q, want the root's %q", dir, f, got, want)
				}
			}
		}
	}
}
