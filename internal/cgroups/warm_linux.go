package cgroups

import (
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/subhost/subhost/internal/solo"
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

// slowMove is a move that waited for the cgroup_mutex (an uncontended
// one on a warm semaphore takes tens of microseconds).
const slowMove = time.Millisecond

// warmLimit ends the moves of a KeepMigrationWarm nobody stopped.
const warmLimit = 30 * time.Second

// warmSocket is the abstract unix socket (in the caller's network
// namespace) whose holder is the one warmer of the boots under way.
const warmSocket = "@subhost-migration-warm"

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
//
// It is for a boot on a quiet host. Boots under way together keep the
// semaphore warm with their own moves, and more moves would only queue
// on the cgroup_mutex (a hundred boots at once, each moving every 2 ms,
// took twice as long). So a boot moves only if it holds warmSocket's
// name (package solo); one that finds it taken knocks instead, which
// tells the warmer that boots are under way together, and the warmer
// stops moving (as it does when a move of its own, past the first, was
// slow). Any local user can take the name or knock on it: that only
// stops the moves.
func KeepMigrationWarm() (stop func()) {
	procs, ok := ownProcsFile()
	if !ok {
		return func() {}
	}
	claim := solo.Take(warmSocket)
	if claim == nil {
		// Another boot's warmer (Take knocked), or no socket.
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer claim.Release()
		pid := strconv.Itoa(unix.Getpid())
		limit := time.After(warmLimit)
		for moves := 1; ; moves++ {
			start := time.Now()
			if writeFile(procs, pid) != nil {
				return
			}
			crowded := moves > 1 && time.Since(start) > slowMove
			if crowded || claim.Knocked() {
				// The name stays taken: no other boot starts moving
				// while this one runs.
				select {
				case <-done:
				case <-limit:
				}
				return
			}
			select {
			case <-done:
				return
			case <-limit:
				return
			case <-time.After(warmInterval):
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
