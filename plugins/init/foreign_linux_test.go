package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

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
