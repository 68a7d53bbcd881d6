package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/internal/mountinfo"
)

// TestKilledAtAnyInstant: the runner's promise that a subhost killed at
// any instant leaves enough for `subhost stop` to undo everything. Every
// host-side process of subhost (the CLI, the supervisor, the plugins,
// the launcher; never the guest) is SIGKILLed at instants spread over a
// boot, and then over a stop; each time, a plain stop must leave nothing
// of the subhost: no state, mount, loop device, netns, cgroup, lock file
// or mark. A boot
// takes about 50 ms here: the instants cover it from the CLI's start to
// the guest's, on faster and slower machines alike.
func TestKilledAtAnyInstant(t *testing.T) {
	for _, users := range []string{"no", "pick"} {
		t.Run("PRIVATE_USERS="+users, func(t *testing.T) {
			e := newEnv(t)
			g := e.newGuest("crash", nil)
			g.config += "\nPRIVATE_USERS=" + users
			if err := os.WriteFile(filepath.Join(g.home, "config"), []byte(g.config+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			killed := 0
			for _, at := range []time.Duration{0, 3, 6, 9, 12, 15, 18, 21, 25, 30, 35, 40, 50, 65, 80} {
				at *= time.Millisecond
				run := e.startIn(g.ns, g.runArgs("--detach")...)
				time.Sleep(at)
				killed += killHostSide()
				run.wait(t, 20*time.Second)
				g.stopsClean("a boot killed after " + at.String())

				g.boot()
				stop := e.startIn(g.ns, "stop", g.name)
				time.Sleep(at)
				killed += killHostSide()
				stop.wait(t, 20*time.Second)
				g.stopsClean("a stop killed after " + at.String())
			}
			if killed < 15 {
				t.Errorf("only %d processes killed in 15 boots: the sweep missed the boots", killed)
			}
		})
	}
}

// killHostSide SIGKILLs every process run from this test's build of
// subhost (its executable in binDir): the guest's PID 1 runs the guest's
// own copy of subhost-init, and is spared. It scans /proc again until a
// scan finds none, so that a process started while one scan ran (a
// supervisor the CLI had just started) goes too, and then waits for each
// to have died: a process being killed loses its executable's link before
// it closes its files, and a subhost lock it held would still be held. It
// returns how many it killed.
func killHostSide() int {
	var killed []int
	for range 50 {
		pids := killHostSideOnce()
		if len(pids) == 0 {
			break
		}
		killed = append(killed, pids...)
	}
	for _, pid := range killed {
		poll(10*time.Second, func() bool { return gone(pid) })
	}
	return len(killed)
}

func killHostSideOnce() []int {
	var killed []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err == nil && strings.HasPrefix(exe, binDir+"/") && syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	return killed
}

// stopsClean runs a plain stop after a kill (what) and fails the test
// unless nothing of the guest is left on the host.
func (g *guest) stopsClean(what string) {
	e := g.e
	e.t.Helper()
	o, er, code := e.inNet(g.ns, "stop", "--timeout", "5s", g.name)
	if code != 0 {
		e.t.Fatalf("%s: stop: exit %d: %s%s", what, code, o, er)
	}
	e.clean(g.name)
	var left []string
	if _, err := os.Lstat(filepath.Join(e.state, g.name)); err == nil {
		left = append(left, "its state directory")
	}
	if mounts, err := mountinfo.Self(); err == nil {
		for _, m := range mounts {
			if strings.HasPrefix(m.Mountpoint, g.home+"/") {
				left = append(left, "mount "+m.Mountpoint)
			}
		}
	}
	if devs, _ := loopdev.FindByBacking(g.image); len(devs) > 0 {
		left = append(left, "loop device "+devs[0].Path)
	}
	var img syscall.Stat_t
	if syscall.Stat(g.image, &img) == nil {
		lock := fmt.Sprintf("/run/subhost/.image-%d:%d-%d.lock", unix.Major(img.Dev), unix.Minor(img.Dev), img.Ino)
		if _, err := os.Lstat(lock); err == nil {
			left = append(left, "the image's lock file "+lock)
		}
	}
	if _, err := os.Lstat("/run/subhost/.net-veth/" + g.name); err == nil {
		left = append(left, "net-veth's mark of its network namespace")
	}
	if dirs := cgroupDirs(g.name); len(dirs) > 0 {
		left = append(left, "cgroups "+strings.Join(dirs, " "))
	}
	if len(left) > 0 {
		e.t.Fatalf("%s, then stopped: left %s", what, strings.Join(left, ", "))
	}
}

// TestControlKilledAtAnyInstant is TestKilledAtAnyInstant for the control
// pipeline (an overlay on NAME.img, a shell, hibernation): `control
// start` and every host-side process it started are killed at instants
// over its boot, and `control stop` must then leave nothing.
func TestControlKilledAtAnyInstant(t *testing.T) {
	e := newEnv(t)
	c := newControlTree(e)
	n := e.name("cctl")
	base := c.busybox("base")
	h := c.home(n, "BASE="+base.Dir)
	c.image(h, n)
	killed := 0
	for _, at := range []time.Duration{0, 4, 8, 12, 16, 20, 25, 30, 40, 50, 65} {
		at *= time.Millisecond
		// A shell session that waits for input until the kill.
		stdin, keep, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := c.command(context.Background(), "", "start", n)
		cmd.Stdin = stdin
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(at)
		killed += killHostSide()
		keep.Close()
		stdin.Close()
		cmd.Wait()
		c.stop("", n, h)
		if _, err := os.Lstat("/run/subhost/.net-veth/" + n); err == nil {
			t.Fatalf("control start killed after %s, then stopped: net-veth's mark is left", at)
		}
		if dirs := cgroupDirs(n); len(dirs) > 0 {
			t.Fatalf("control start killed after %s, then stopped: cgroups %v are left", at, dirs)
		}
	}
	if killed < 11 {
		t.Errorf("only %d processes killed in 11 starts: the sweep missed the boots", killed)
	}
}
