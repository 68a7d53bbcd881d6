package cgroups

import (
	"os"
	"path/filepath"
	"strconv"
)

// WarmMigration starts, in the background, the slow part of the next
// move of a process between cgroups. Every such move takes the kernel's
// cgroup_threadgroup_rwsem for writing, holding the global cgroup_mutex,
// and the first after a quiet while waits there for an RCU grace period
// (the semaphore's rcu_sync: 6 to 15 ms on these machines); moves that
// follow within about one more grace period take microseconds. It
// writes this process's own PID into the cgroup it is already in, in its
// first mounted hierarchy: a move that changes nothing.
//
// A boot calls it twice. The supervisor, as it starts the plugins: the
// first grace period passes while they start, when nothing of the boot
// needs the cgroup_mutex (the cgroup stage's Up makes cgroups, which
// does). The cgroup stage, as it finishes: the launcher's moves a few
// milliseconds later then meet a fast path (or a grace period already
// under way). With neither, the launcher's first move waited 2 to 12 ms.
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
