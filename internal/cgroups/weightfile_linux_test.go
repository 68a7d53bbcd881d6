package cgroups

import (
	"os"
	"path/filepath"
	"testing"
)

// TestBlkioWeightFile: CFQ's weight file is on the root cgroup; BFQ's is
// only on the cgroups below it, the subhost parent or another.
func TestBlkioWeightFile(t *testing.T) {
	touch := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		files []string
		want  string
	}{
		{"none", []string{"blkio.throttle.read_bps_device", "system.slice/blkio.throttle.read_bps_device"}, ""},
		{"cfq", []string{"blkio.weight", "system.slice/blkio.weight"}, cfqWeightFile},
		{"bfq below the root", []string{"system.slice/blkio.bfq.weight"}, bfqWeightFile},
		{"bfq in the subhost parent", []string{Dir + "/blkio.bfq.weight"}, bfqWeightFile},
	} {
		root := t.TempDir()
		for _, f := range tc.files {
			touch(filepath.Join(root, f))
		}
		if got := blkioWeightFile(hierarchy{mount: root, base: root}); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
