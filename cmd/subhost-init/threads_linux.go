package main

import (
	"runtime"
	"sync"
)

// spareThreads is how many OS threads PID 1 makes at start and keeps.
const spareThreads = 6

// reserveThreads makes PID 1 immune to its guest reaching PIDS_MAX.
// Threads count as tasks against the pids limit, and the Go runtime
// aborts the whole process ("failed to create new OS thread") when it
// needs one and clone fails; for PID 1 that ends the guest. So the
// runtime gets every thread it will need now, while the guest is young:
// GOMAXPROCS 1 (PID 1 computes nothing), and spareThreads threads made by
// goroutines that each lock one and wait, then unlock and end. The
// runtime never ends an idle thread that is not locked, so they stay in
// its pool, and the few blocking system calls PID 1 makes (fork and exec,
// sync) take one from there instead of cloning. A thread of PID 1 is a
// task the guest cannot use, and 6 of 16384 (the default limit) is
// nothing.
func reserveThreads() {
	runtime.GOMAXPROCS(1)
	var locked sync.WaitGroup
	release := make(chan struct{})
	for i := 0; i < spareThreads; i++ {
		locked.Add(1)
		go func() {
			runtime.LockOSThread()
			locked.Done()
			<-release
			runtime.UnlockOSThread()
		}()
	}
	locked.Wait()
	close(release)
}
