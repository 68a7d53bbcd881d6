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
// spareThreads threads made by goroutines that each lock one and wait,
// then unlock and end. The runtime never ends an idle thread that is
// not locked, so they stay in its pool, and the few blocking system
// calls PID 1 makes (fork and exec, sync) take one from there instead
// of cloning. A thread of PID 1 is a task the guest cannot use, and 6 of
// 16384 (the default limit) is nothing. Once its signal handlers are in
// place too, PID 1 runs on one CPU (runOnOneCPU): it computes nothing.
func reserveThreads() {
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

// runOnOneCPU sets GOMAXPROCS to 1, after reserveThreads and the
// signal handlers rather than before: each signal.Notify of a new signal
// is a round trip with the runtime's signal-mask thread, and with one P
// each such trip, and each locked thread's start, hands the P from
// thread to thread. Measured here: the threads and the 25 handlers
// take 1.1-1.2 ms this way, 1.5-1.7 ms with GOMAXPROCS 1 first, and the
// guest's rcS waits for them.
func runOnOneCPU() { runtime.GOMAXPROCS(1) }
