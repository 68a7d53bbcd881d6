package loopdev

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/subhost/subhost/sdk/stagetest"
)

// BenchmarkList: what one listing of the attached loop devices costs (it
// grows with the number of loop devices the host has ever made).
func BenchmarkList(b *testing.B) {
	for b.Loop() {
		if _, err := List(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFindByBackingAmong100: what a mount stage's search for its
// image's devices costs on a host where a hundred guests' devices are
// attached (every boot's Validate and Up make one).
func BenchmarkFindByBackingAmong100(b *testing.B) {
	stagetest.RequireRoot(b)
	dir := b.TempDir()
	for i := range 100 {
		img := filepath.Join(dir, fmt.Sprintf("disk%d.raw", i))
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Truncate(img, 1<<20); err != nil {
			b.Fatal(err)
		}
		d, f, err := Attach(img, Options{Tag: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		b.Cleanup(func() { Detach(*d) })
	}
	probe := filepath.Join(dir, "disk50.raw")
	for b.Loop() {
		if devs, err := FindByBacking(probe); err != nil || len(devs) != 1 {
			b.Fatalf("FindByBacking: %+v %v", devs, err)
		}
	}
}
