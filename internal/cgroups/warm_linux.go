package cgroups

import (
	"os"
	"path/filepath"
	"strconv"
)

// WarmMigration starts, in the background, the slow part of the next
// move of a process between cgroups. Every such move takes the kernel's
// cgroup_threadgroup_rwsem for writing, and the first after a quiet
// while waits for an RCU grace period (its rcu_sync; 6 to 15 ms on these
// machines) where the moves that follow shortly after take microseconds.
// The cgroup stage calls it as it makes the guest's cgroups, so that the
// grace period has passed, or is under way, when the init stage moves
// the guest's launcher into them a few milliseconds later. It writes this
// process's own PID into the cgroup it is already in, in its first
// mounted hierarchy: a move that changes nothing.
func WarmMigration() {
	hs, err := hierarchies()
	if err != nil {
		return
	}
	for _, h := range hs {
		if h.mount == "" {
			continue
		}
		procs := filepath.Join(h.mount, h.path, "cgroup.procs")
		go os.WriteFile(procs, []byte(strconv.Itoa(os.Getpid())), 0)
		return
	}
}
