package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/cgroups"
	"github.com/subhost/subhost/internal/testunit"
)

// superviseInUnit boots a guest with `run --supervise` as systemd would
// start subhost@NAME.service: in a scratch unit's cgroup, delegated or
// not, with INVOCATION_ID and NOTIFY_SOCKET set; it returns once READY=1
// has come.
func superviseInUnit(t *testing.T, tag string, delegated bool) (*env, *guest, *testunit.Unit, *bg) {
	e := newEnv(t)
	g := e.newGuest(tag, nil)
	u := testunit.New(t, "subhost@"+g.name+".service", delegated)
	l := listenNotify(t)
	args := append([]string{"run", "--supervise", "--pipeline", "pretend-boot", "--home", g.home}, g.name)
	cmd := e.command(context.Background(), g.ns, args...)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+l.path, "INVOCATION_ID=5c0ffee5c0ffee5c0ffee5c0ffee5c0f")
	u.Wrap(cmd)
	sup := e.startCmd(cmd)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run --supervise stderr:\n%s", tail(sup.Stderr.String(), 4000))
		}
	})
	l.waitFor(t, "READY=1", 30*time.Second)
	return e, g, u, sup
}

// TestSuperviseDelegatedUnit: `run --supervise` in a scratch
// subhost@T.service cgroup marked delegated (trusted.delegate=1) moves
// itself into the unit's supervisor leaf and makes the guest's cgroup2
// and name=systemd cgroups, the device program with them, below the
// unit's (the v1 controller hierarchies' stay at their fixed place);
// status reads the recorded paths; SIGTERM removes them all, leaving the
// unit's cgroup as systemd would find it (the empty leaf, which it
// removes with the unit).
func TestSuperviseDelegatedUnit(t *testing.T) {
	e, g, u, sup := superviseInUnit(t, "deleg", true)
	spid := sup.Cmd.Process.Pid
	leaf := u.Path + "/" + cgroups.Leaf
	for _, h := range []string{"", "name=systemd"} {
		if h == "name=systemd" && u.Systemd == "" {
			continue
		}
		if got := testunit.CgroupOf(spid, h); got != leaf {
			t.Errorf("supervisor's cgroup in %q: %s, want its leaf %s", h, got, leaf)
		}
	}
	r := e.status(g.name)
	if r.State != "running" || r.PID == 0 {
		t.Fatalf("at READY=1 the subhost is %s with guest pid %d", r.State, r.PID)
	}
	guestCg := u.Path + "/" + cgroups.Dir + "/" + g.name + "/" + cgroups.Guest
	if got := testunit.CgroupOf(r.PID, ""); got != guestCg {
		t.Errorf("guest PID 1's cgroup2 cgroup: %s, want %s", got, guestCg)
	}
	if got := testunit.CgroupOf(r.PID, "name=systemd"); u.Systemd != "" && got != guestCg {
		t.Errorf("guest PID 1's name=systemd cgroup: %s, want %s", got, guestCg)
	}
	if got, want := testunit.CgroupOf(r.PID, "memory"), "/"+cgroups.Dir+"/"+g.name+"/"+cgroups.Guest; got != want {
		t.Errorf("guest PID 1's memory cgroup: %s, want the fixed place %s", got, want)
	}
	limits := filepath.Join(u.V2, cgroups.Dir, g.name)
	if ok, err := cgroups.DeviceProgramAttached(limits); !ok {
		t.Errorf("no device program on %s (%v)", limits, err)
	}
	// The guest sees its own cgroup as its namespace's root.
	if out := g.mustEnter("cat", "/proc/self/cgroup"); !strings.Contains(out, "0::/\n") {
		t.Errorf("inside the guest /proc/self/cgroup is %q, want 0::/", out)
	}
	if !strings.Contains(sup.Stderr.String(), "below this unit's delegated cgroup "+u.Path) {
		t.Errorf("the unit's log does not say where the guest's cgroups go:\n%s", sup.Stderr.String())
	}
	if o := e.mustRun("", "status", "--json", g.name); !strings.Contains(o, `"pids"`) {
		t.Errorf("status --json has no pids usage: %s", o)
	}

	sup.Cmd.Process.Signal(syscall.SIGTERM)
	if code := sup.wait(t, 40*time.Second); code != 0 {
		t.Errorf("run --supervise after SIGTERM: exit %d, want 0\n%s", code, sup.Stderr.String())
	}
	e.clean(g.name)
	if left := u.Left(cgroups.Leaf); len(left) > 0 {
		t.Errorf("left below the unit's cgroup after SIGTERM: %q", left)
	}
	if b, _ := os.ReadFile(filepath.Join(u.V2, cgroups.Leaf, "cgroup.procs")); len(b) > 0 {
		t.Errorf("processes left in the supervisor's leaf: %s", b)
	}
}

// TestSuperviseUndelegatedUnit: in a unit's cgroup that is not marked
// delegated nothing changes: the supervisor stays where systemd put it,
// the guest's cgroups are at their fixed place, and the unit's log says
// why.
func TestSuperviseUndelegatedUnit(t *testing.T) {
	e, g, u, sup := superviseInUnit(t, "undel", false)
	if got := testunit.CgroupOf(sup.Cmd.Process.Pid, ""); got != u.Path {
		t.Errorf("supervisor's cgroup: %s, want the unit's %s", got, u.Path)
	}
	r := e.status(g.name)
	if got, want := testunit.CgroupOf(r.PID, ""), "/"+cgroups.Dir+"/"+g.name+"/"+cgroups.Guest; got != want {
		t.Errorf("guest PID 1's cgroup2 cgroup: %s, want the fixed place %s", got, want)
	}
	if !strings.Contains(sup.Stderr.String(), "fixed place") || !strings.Contains(sup.Stderr.String(), "not marked delegated") {
		t.Errorf("the unit's log does not say why the guest's cgroups are at the fixed place:\n%s", sup.Stderr.String())
	}
	sup.Cmd.Process.Signal(syscall.SIGTERM)
	if code := sup.wait(t, 40*time.Second); code != 0 {
		t.Errorf("run --supervise after SIGTERM: exit %d, want 0\n%s", code, sup.Stderr.String())
	}
	e.clean(g.name)
	if left := u.Left(""); len(left) > 0 {
		t.Errorf("cgroups below a unit that was not delegated: %q", left)
	}
}

// TestSuperviseDelegatedUnitKilled: the supervisor of a guest below a
// delegated unit's cgroup SIGKILLed; `subhost stop` from a shell, which
// knows no unit, finds the guest's cgroups by the boot record and
// removes them.
func TestSuperviseDelegatedUnitKilled(t *testing.T) {
	e, g, u, sup := superviseInUnit(t, "dkill", true)
	pid := e.status(g.name).PID
	sup.Cmd.Process.Kill()
	sup.wait(t, 10*time.Second)
	if gone(pid) {
		t.Fatalf("the guest died with its supervisor")
	}
	e.mustRun("", "stop", "--timeout", "5s", g.name)
	e.clean(g.name)
	if left := u.Left(cgroups.Leaf); len(left) > 0 {
		t.Errorf("left below the unit's cgroup after subhost stop: %q", left)
	}
}
