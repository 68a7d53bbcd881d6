package cgroups

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/subhost/subhost/sdk"
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

// TestReadInForceWeights: v1's weights read back on io.weight's scale,
// each from its own file's range and default.
func TestReadInForceWeights(t *testing.T) {
	for _, tc := range []struct {
		hierarchy, file, value string
		cpu, io                int64 // 0: none reported
	}{
		{"cpu,cpuacct", "cpu.shares", "337", 33, 0}, // CPU_WEIGHT=33
		{"cpu,cpuacct", "cpu.shares", "1024", 0, 0},
		{"blkio", "blkio.weight", "500", 0, 0},
		{"blkio", "blkio.weight", "1000", 0, 200},
		{"blkio", "blkio.bfq.weight", "100", 0, 0},
		{"blkio", "blkio.bfq.weight", "550", 0, 5050},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.value+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		got := ReadInForce([]sdk.Cgroup{{Hierarchy: tc.hierarchy, Dir: dir}})
		value := func(p *int64) int64 {
			if p == nil {
				return 0
			}
			return *p
		}
		if value(got.CPUWeight) != tc.cpu || value(got.IOWeight) != tc.io {
			t.Errorf("%s %s: cpu weight %d, io weight %d; want %d, %d", tc.file, tc.value, value(got.CPUWeight), value(got.IOWeight), tc.cpu, tc.io)
		}
	}
}
