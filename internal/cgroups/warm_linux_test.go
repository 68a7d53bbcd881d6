package cgroups

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk/stagetest"
)

// TestKeepMigrationWarm: the moves change nothing (this process stays in
// its cgroups); a boot that finds another's warmer moves not at all and
// tells it so (the lock file touched); the lock is held until the
// warmer's stop, which may be called more than once.
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
	lock := filepath.Join(t.TempDir(), "warm.lock")
	held := func() bool {
		fd, err := unix.Open(lock, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) != nil
	}
	modified := func() unix.Timespec {
		var st unix.Stat_t
		if err := unix.Stat(lock, &st); err != nil {
			t.Fatal(err)
		}
		return st.Mtim
	}
	stop1 := KeepMigrationWarm(lock)
	if !held() {
		t.Fatal("the first boot's warmer does not hold the lock")
	}
	time.Sleep(20 * warmInterval)
	// A move of its own meanwhile works as ever.
	if err := writeFile(procs, strconv.Itoa(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	was := modified()
	stop2 := KeepMigrationWarm(lock)
	if modified() == was {
		t.Error("a second boot did not touch the lock file")
	}
	stop2()
	if !held() {
		t.Error("the lock went with the second boot")
	}
	stop1()
	stop1()
	for deadline := time.Now().Add(2 * time.Second); held(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lock is still held after stop")
		}
	}
	after, _ := os.ReadFile("/proc/self/cgroup")
	if string(after) != string(before) {
		t.Errorf("cgroups changed:\n%s\nnow:\n%s", before, after)
	}
}
