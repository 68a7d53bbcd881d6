package cgroups

import (
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Moving a process between cgroups takes the kernel's
// cgroup_threadgroup_rwsem for writing while holding the global
// cgroup_mutex. The first such move after a quiet while waits, mutex
// held, for an RCU grace period (the semaphore's rcu_sync: 6 to 25 ms on
// these machines); moves that follow within about one more grace period
// of the last take microseconds. A boot moves the guest's launcher into
// its cgroups: KeepMigrationWarm makes sure that move meets the fast
// path, by paying the slow one at the boot's start and keeping it paid.

// warmInterval is how often KeepMigrationWarm moves: well inside one
// grace period, the window after a move in which the next is fast, on
// any host (a grace period takes a few milliseconds at the least).
const warmInterval = 2 * time.Millisecond

// warmLimit ends the moves of a KeepMigrationWarm nobody stopped.
const warmLimit = 30 * time.Second

// KeepMigrationWarm moves this process into the cgroup it is already in
// (a move that changes nothing, in its first mounted hierarchy), at once
// and then every warmInterval until stop is called. The first move waits
// for the grace period, in the background, while the boot's plugins
// start (nothing of the boot needs the cgroup_mutex then); the ones that
// follow keep the kernel on its fast path, so that neither the cgroup
// stage's mkdirs nor the launcher's moves wait behind a fresh grace
// period. Meanwhile the host's forks and exits take the semaphore's
// slower reader path, as on a host mounted with favordynmods; stop ends
// that. stop may be called more than once.
func KeepMigrationWarm() (stop func()) {
	procs, ok := ownProcsFile()
	if !ok {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		pid := strconv.Itoa(unix.Getpid())
		tick := time.NewTicker(warmInterval)
		defer tick.Stop()
		limit := time.After(warmLimit)
		for {
			if writeFile(procs, pid) != nil {
				return
			}
			select {
			case <-done:
				return
			case <-limit:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// ownProcsFile is the cgroup.procs of this process's cgroup in its first
// mounted hierarchy.
func ownProcsFile() (string, bool) {
	hs, err := hierarchies()
	if err != nil {
		return "", false
	}
	for _, h := range hs {
		if h.mount != "" {
			return filepath.Join(h.mount, h.path, "cgroup.procs"), true
		}
	}
	return "", false
}
