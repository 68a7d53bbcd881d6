package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/idrange"
	"github.com/subhost/subhost/sdk/stagetest"
)

func TestForeignOwners(t *testing.T) {
	stagetest.RequireRoot(t) // chown
	dir := t.TempDir()
	for name, uid := range map[string]int{"a": 0, "b": 1000, "c": 70000, "d": 65535} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, uid, 0); err != nil {
			t.Fatal(err)
		}
	}
	count, examples, complete := foreignOwners(dir, idrange.Range{Base: 1 << 20, Size: 65536}, time.Minute)
	if count != 1 || len(examples) != 1 || examples[0] != filepath.Join(dir, "c") || !complete {
		t.Errorf("got %d %v %v; want only c", count, examples, complete)
	}
}
