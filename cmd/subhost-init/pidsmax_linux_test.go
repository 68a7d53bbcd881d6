package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/guestexec"
	"github.com/subhost/subhost/internal/guestexit"
)

// TestForkStormAtPidsMax: a guest whose rcS fills its pids cgroup to the
// limit with processes that stay: PID 1 (a Go program, which aborts when
// the runtime cannot make a thread) keeps working, reaps, and powers off
// cleanly on SIGPWR while the guest is still at its limit.
func TestForkStormAtPidsMax(t *testing.T) {
	setup(t)
	const limit = 30
	dir := fmt.Sprintf("/sys/fs/cgroup/pids/subhost-init-test%d", os.Getpid())
	if _, err := os.Stat("/sys/fs/cgroup/pids/cgroup.procs"); err != nil {
		dir = "" // no v1 pids hierarchy; try cgroup2's
		for _, c := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
			if b, err := os.ReadFile(c + "/cgroup.controllers"); err == nil && strings.Contains(string(b), "pids") {
				dir = fmt.Sprintf("%s/subhost-init-test%d", c, os.Getpid())
			}
		}
	}
	if dir == "" {
		t.Skip("no pids controller on this host")
	}
	must(t, os.Mkdir(dir, 0o755))
	t.Cleanup(func() {
		for deadline := time.Now().Add(5 * time.Second); os.Remove(dir) != nil && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("cannot remove %s", dir)
		}
	})
	must(t, os.WriteFile(filepath.Join(dir, "pids.max"), []byte(fmt.Sprint(limit)), 0))

	root := newRoot(t, map[string]string{"/etc/init.d/rcS": `#!/bin/sh
for i in $(seq 1 100); do sleep 600 & done 2>/dev/null
`})
	g := boot(t, root, []string{cgroupEnv + "=" + dir})
	g.booted()
	current := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "pids.current"))
		return strings.TrimSpace(string(b))
	}
	// rcS itself ends once it cannot fork (and rc 2 after it): the
	// guest stays at its limit but for those.
	if got, _ := strconv.Atoi(current()); got < limit-2 {
		t.Errorf("pids.current %d, want about the limit %d", got, limit)
	}
	// PID 1 gets SIGCHLDs, runs timers and tries to fork rc 0, all at
	// the limit.
	time.Sleep(200 * time.Millisecond)
	g.signal(29) // SIGIO, dropped: PID 1 must still be there after it
	time.Sleep(100 * time.Millisecond)
	if !g.running() {
		t.Fatalf("PID 1 died at PIDS_MAX: %s", guestexit.Describe(g.ws))
	}
	g.signal(30) // SIGPWR
	if got := g.wait(20 * time.Second); got != guestexit.PowerOff {
		t.Errorf("guest ended with %s, want a power off", guestexit.Describe(g.ws))
	}
	c := g.console()
	if strings.Contains(c, "fatal error") || strings.Contains(c, "failed to create new OS thread") || !strings.Contains(c, "sending SIGTERM to all processes") {
		t.Errorf("PID 1 did not power off cleanly at the limit; console:\n%s", c)
	}
}

// TestSpareThreads: PID 1 has made its threads before anything runs.
func TestSpareThreads(t *testing.T) {
	reserveThreads()
	b, err := os.ReadFile("/proc/self/status")
	must(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		var n int
		if _, err := fmt.Sscanf(l, "Threads: %d", &n); err == nil && n < spareThreads {
			t.Errorf("%d threads after reserveThreads, want at least %d", n, spareThreads)
		}
	}
}

// TestEnterSessionsAtPidsMax: `subhost enter` sessions that stay open
// (each a command PID 1 waits on, and a connection it listens to for the
// client's signals) hold none of PID 1's threads: with more of them open
// than PID 1 has spare threads, a guest at its pids limit still cannot
// kill its PID 1.
func TestEnterSessionsAtPidsMax(t *testing.T) {
	setup(t)
	const limit = 40
	dir := fmt.Sprintf("/sys/fs/cgroup/pids/subhost-init-test%d", os.Getpid())
	if _, err := os.Stat("/sys/fs/cgroup/pids/cgroup.procs"); err != nil {
		t.Skip("no v1 pids hierarchy on this host")
	}
	must(t, os.Mkdir(dir, 0o755))
	t.Cleanup(func() {
		for deadline := time.Now().Add(5 * time.Second); os.Remove(dir) != nil && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	})
	must(t, os.WriteFile(filepath.Join(dir, "pids.max"), []byte(fmt.Sprint(limit)), 0))
	root := newRoot(t, map[string]string{"/etc/init.d/rcS": `#!/bin/sh
echo rcS >>/markers/log
while [ ! -e /markers/go ]; do sleep 0.05; done
for i in $(seq 1 100); do sleep 600 & done 2>/dev/null
`})
	g := boot(t, root, []string{cgroupEnv + "=" + dir})
	g.waitLog("rcS")
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", g.pid))
	must(t, err)
	defer ns.Close()
	for i := 0; i < 2*spareThreads; i++ {
		c, err := guestexec.DialUntil(int(ns.Fd()), 0, time.Now().Add(10*time.Second))
		must(t, err)
		defer c.Close()
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		must(t, err)
		_, err = c.Start(guestexec.Request{Argv: []string{"/bin/sleep", "600"}, Env: []string{"PATH=/bin"}}, []*os.File{null, null, null})
		null.Close()
		must(t, err)
	}
	must(t, os.WriteFile(filepath.Join(root, "markers/go"), nil, 0o644))
	g.booted()
	time.Sleep(300 * time.Millisecond)
	g.signal(29) // SIGIO, dropped: PID 1 wakes up at the limit
	time.Sleep(200 * time.Millisecond)
	if !g.running() {
		t.Fatalf("PID 1 died at PIDS_MAX with %d enter sessions open: %s", 2*spareThreads, guestexit.Describe(g.ws))
	}
	g.signal(30) // SIGPWR
	if got := g.wait(30 * time.Second); got != guestexit.PowerOff {
		t.Errorf("guest ended with %s, want a power off", guestexit.Describe(g.ws))
	}
	if c := g.console(); strings.Contains(c, "fatal error") || strings.Contains(c, "failed to create new OS thread") {
		t.Errorf("PID 1 ran out of threads; console:\n%s", c)
	}
}
