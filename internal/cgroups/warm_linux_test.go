package cgroups

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/subhost/subhost/sdk/stagetest"
)

// TestKeepMigrationWarm: the moves change nothing (this process stays in
// its cgroups), and stop may be called more than once.
func TestKeepMigrationWarm(t *testing.T) {
	stagetest.RequireRoot(t)
	procs, ok := ownProcsFile()
	if !ok {
		t.Skip("no mounted cgroup hierarchy")
	}
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	stop := KeepMigrationWarm()
	time.Sleep(20 * warmInterval)
	// A move of its own meanwhile works as ever.
	if err := writeFile(procs, strconv.Itoa(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	stop()
	stop()
	after, _ := os.ReadFile("/proc/self/cgroup")
	if string(after) != string(before) {
		t.Errorf("cgroups changed:\n%s\nnow:\n%s", before, after)
	}
}
