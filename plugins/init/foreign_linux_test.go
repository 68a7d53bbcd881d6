package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/subhost/subhost/internal/idrange"
	"github.com/subhost/subhost/sdk/stagetest"
)

// TestForeignOwners: ids are judged from where the guest's start as the
// root shows them: 0 for a file system the host sees unmapped, the
// range's base for one the guest's user namespace owns.
func TestForeignOwners(t *testing.T) {
	stagetest.RequireRoot(t) // chown
	for _, base := range []uint32{0, 1 << 20} {
		dir := t.TempDir()
		if err := os.Lchown(dir, int(base), int(base)); err != nil {
			t.Fatal(err)
		}
		for name, uid := range map[string]uint32{"a": 0, "b": 1000, "c": 70000, "d": 65535} {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(p, int(base+uid), int(base)); err != nil {
				t.Fatal(err)
			}
		}
		count, examples, complete := foreignOwners(dir, idrange.Range{Base: base, Size: 65536}, time.Minute)
		if count != 1 || len(examples) != 1 || examples[0] != filepath.Join(dir, "c") || !complete {
			t.Errorf("base %d: got %d %v %v; want only c", base, count, examples, complete)
		}
	}
}

// TestWarnForeignOwnersOnce: a root whose owners were all inside the
// range is marked and not walked again for the same range size; a root
// with foreign owners is walked (and warned about) at every boot.
func TestWarnForeignOwnersOnce(t *testing.T) {
	stagetest.RequireRoot(t) // trusted.* xattrs, chown
	dir := t.TempDir()
	var out bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Warn})
	ids := idrange.Range{Base: 1 << 20, Size: 65536}
	warnForeignOwners(log, dir, ids, false)
	if out.Len() != 0 {
		t.Fatalf("warning about a clean root: %s", out.String())
	}
	// Owned outside the range, but added after the check: not walked
	// again (the mark holds for this range size).
	p := filepath.Join(dir, "late")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(p, 70000, 0); err != nil {
		t.Fatal(err)
	}
	warnForeignOwners(log, dir, ids, false)
	if out.Len() != 0 {
		t.Fatalf("a marked root was walked again: %s", out.String())
	}
	// Another range size: walked, warned, and not marked.
	warnForeignOwners(log, dir, idrange.Range{Base: 1 << 20, Size: 65535}, false)
	if !strings.Contains(out.String(), "outside its user namespace's range") {
		t.Fatalf("no warning for a foreign owner under another range size: %q", out.String())
	}
}
