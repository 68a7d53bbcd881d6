package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/testguest"
)

// gone reports whether pid has exited (no process, or a zombie).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// TestDetachedConsoleEnterStatus: `run --detach` returns only once PID 1
// runs; status and list show it running with its PID and uptime; enter
// passes a command's exit status through; console attaches through a pty
// (output seen, typed commands run) and Ctrl-] d detaches, the guest
// still running.
func TestDetachedConsoleEnterStatus(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("det", func(r *testguest.Root) { r.ConsoleShell() })
	e.mustRun(g.ns, g.runArgs("--detach")...)

	// No waiting: run --detach has returned, so PID 1 must be running.
	r := e.status(g.name)
	if r.State != "running" || r.PID == 0 || r.Supervisor == 0 || r.Uptime == "" {
		t.Fatalf("status right after run --detach: %+v; want running with pid, supervisor and uptime", r)
	}
	if gone(r.PID) {
		t.Fatalf("guest PID %d is not running right after run --detach", r.PID)
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.PID))
	if !strings.Contains(string(cmdline), "subhost-init") {
		t.Errorf("guest PID %d runs %q, want subhost-init", r.PID, cmdline)
	}
	if r.Pipeline != "pretend-boot" || r.Home != g.home {
		t.Errorf("status: pipeline %q home %q, want pretend-boot and %s", r.Pipeline, r.Home, g.home)
	}
	g.waitReady()

	o := e.mustRun("", "list", "--json")
	var list []report
	if err := json.Unmarshal([]byte(o), &list); err != nil {
		t.Fatalf("list --json: %v: %q", err, o)
	}
	i := slices.IndexFunc(list, func(x report) bool { return x.Name == g.name })
	if i < 0 || list[i].State != "running" || list[i].PID != r.PID || list[i].Uptime == "" {
		t.Errorf("list --json: %s; want %s running with pid %d and uptime", o, g.name, r.PID)
	}
	time.Sleep(1100 * time.Millisecond)
	if up := e.status(g.name).UptimeS; up < 1 {
		t.Errorf("uptime_s = %d after more than a second", up)
	}

	// enter: exit status passed through.
	if _, _, code := e.run("enter", g.name, "--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("enter -- sh -c 'exit 7': exit %d, want 7", code)
	}
	if out := g.mustEnter("sh", "-c", "echo $container"); strings.TrimSpace(out) != "subhost" {
		t.Errorf("enter: container=%q, want subhost", out)
	}

	// console: type to the guest's console shell, see its output, detach.
	c := e.startPty("", "console", g.name)
	time.Sleep(200 * time.Millisecond) // let it attach before typing
	c.send("echo $((6*7))x\r")
	c.expect(0, "42x", 10*time.Second)
	c.send("\x1dd")
	if code := c.wait(10 * time.Second); code != 0 {
		t.Errorf("console after Ctrl-] d: exit %d; output:\n%s", code, c.Output())
	}
	if !strings.Contains(c.Output(), "detached") {
		t.Errorf("console did not say it detached:\n%s", c.Output())
	}
	if r2 := e.status(g.name); r2.State != "running" || r2.PID != r.PID {
		t.Errorf("after detaching the console: %+v; want still running as pid %d", r2, r.PID)
	}
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}

// TestSupervisorKilled: the supervisor SIGKILLed while the guest runs;
// `subhost stop` still kills the guest and brings every stage down.
func TestSupervisorKilled(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("skill", nil)
	g.boot()
	r := e.status(g.name)
	if r.Supervisor == 0 {
		t.Fatalf("status shows no supervisor: %+v", r)
	}
	if err := syscall.Kill(r.Supervisor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the supervisor to die", 5*time.Second, func() bool { return gone(r.Supervisor) })
	if gone(r.PID) {
		t.Fatalf("the guest died with its supervisor")
	}
	g.serves()
	e.mustRun("", "stop", "--timeout", "5s", g.name)
	e.clean(g.name)
	e.waitFor("guest PID 1 to be gone", 5*time.Second, func() bool { return gone(r.PID) })
}

// TestStopWithTheSupervisorStopped: a stop whose supervisor is stopped
// (SIGSTOP, a debugger) says so within seconds instead of waiting out its
// two minutes, and a forced stop then takes everything down.
func TestStopWithTheSupervisorStopped(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("sstop", nil)
	g.boot()
	r := e.status(g.name)
	if err := syscall.Kill(r.Supervisor, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(r.Supervisor, syscall.SIGCONT) })
	start := time.Now()
	_, errOut, code := e.inNet(g.ns, "stop", "--timeout", "5s", g.name)
	want := fmt.Sprintf("supervisor pid %d is stopped (SIGSTOP, or a debugger): continue it (kill -CONT %d)", r.Supervisor, r.Supervisor)
	if code == 0 || !strings.Contains(errOut, want) {
		t.Errorf("stop with the supervisor stopped: exit %d, %q; want a failure saying %q", code, errOut, want)
	}
	if took := time.Since(start); took > time.Minute {
		t.Errorf("stop took %s to give up on a stopped supervisor", took.Round(time.Second))
	}
	e.mustRun(g.ns, "stop", "--force", "--timeout", "5s", g.name)
	e.clean(g.name)
	e.waitFor("guest PID 1 to be gone", 5*time.Second, func() bool { return gone(r.PID) })
}

// TestSupervisorSIGTERM: SIGTERM to the supervisor (what a service manager
// sends) is a graceful stop: rc 0 runs, everything comes down.
func TestSupervisorSIGTERM(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("sterm", nil)
	g.boot()
	r := e.status(g.name)
	if err := syscall.Kill(r.Supervisor, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e.clean(g.name)
	e.waitFor("guest PID 1 to be gone", 5*time.Second, func() bool { return gone(r.PID) })
	e.waitFor("the supervisor to end", 10*time.Second, func() bool { return gone(r.Supervisor) })
	b, _ := os.ReadFile(filepath.Join(logDir, g.name+".log"))
	if !strings.Contains(string(b), "testguest: rc 0") {
		t.Errorf("rc 0 did not run: not a graceful stop; console log:\n%s", tail(string(b), 2000))
	}
}

// TestForegroundRunPty: a foreground `run` on a terminal shows the console
// and takes input; Ctrl-] q powers the guest off, the run ends, the host
// is clean.
func TestForegroundRunPty(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("fg", func(r *testguest.Root) { r.ConsoleShell() })
	c := e.startPty(g.ns, g.runArgs()...)
	at := c.expect(0, "testguest: rcS done", 15*time.Second)
	at = c.expect(at, "testguest: rc 2", 10*time.Second)
	g.serves()
	c.send("echo $((6*7))y\r")
	at = c.expect(at, "42y", 10*time.Second)
	c.send("\x1dq")
	if code := c.wait(20 * time.Second); code != 0 {
		t.Errorf("foreground run after Ctrl-] q: exit %d; output:\n%s", code, tail(c.Output(), 2000))
	}
	e.clean(g.name)
	b, _ := os.ReadFile(filepath.Join(logDir, g.name+".log"))
	if !strings.Contains(string(b), "testguest: rc 0") {
		t.Errorf("rc 0 did not run: Ctrl-] q was not a graceful power off; console log:\n%s", tail(string(b), 2000))
	}
	// The run's last words say how the guest ended and that the subhost
	// is stopped (cmd/subhost runSubhost: "subhost NAME: guest HOW; STATUS").
	end := strings.TrimSpace(c.Output()[at:])
	if want := "subhost " + g.name + ": guest power off; stopped"; !strings.HasSuffix(end, want) {
		t.Errorf("foreground run ended with %q, want a last line %q", tail(end, 200), want)
	}
}

// TestHostileRoots boots guest roots whose /proc, /sys, /dev, /run, /sbin
// or /sbin/subhost-init are absolute symlinks to host paths: nothing
// outside the guest root changes, the boot is refused (exit 1, a clear
// error) or confined, and the host is clean afterwards.
func TestHostileRoots(t *testing.T) {
	for _, tc := range []struct {
		path    string // symlink in the guest root
		target  string // under the outside directory
		isDir   bool
		refused bool // the boot must fail
	}{
		{"proc", "proc", true, true},
		{"sys", "sys", true, true},
		{"dev", "dev", true, true},
		{"run", "run", true, true},
		{"sbin", "sbin", true, false},
		{"sbin/subhost-init", "subhost-init", false, false},
	} {
		t.Run(strings.ReplaceAll(tc.path, "/", "-"), func(t *testing.T) {
			e := newEnv(t)
			out := t.TempDir()
			target := filepath.Join(out, tc.target)
			if tc.isDir {
				os.Mkdir(target, 0o755)
				os.WriteFile(filepath.Join(target, "marker"), []byte("host\n"), 0o644)
			} else {
				os.WriteFile(target, []byte("host file\n"), 0o755)
			}
			before := treeOf(t, out)
			g := e.newGuest("evil", func(r *testguest.Root) {
				if err := os.RemoveAll(r.Path(tc.path)); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, r.Path(tc.path)); err != nil {
					t.Fatal(err)
				}
			})
			o, er, code := e.inNet(g.ns, g.runArgs("--detach")...)
			switch {
			case code == 1:
				if !strings.Contains(er, tc.path) {
					t.Errorf("boot refused without naming %s: %s", tc.path, er)
				}
				t.Logf("refused: %s", strings.TrimSpace(er))
			case code == 0 && !tc.refused:
				// Confined: the guest runs with its own files.
				g.waitReady()
				if got := g.mustEnter("sh", "-c", "test -L /"+tc.path+" && echo symlink || echo replaced"); tc.path == "sbin/subhost-init" && got != "replaced\n" {
					t.Errorf("/sbin/subhost-init in the guest: %s", got)
				}
				e.mustRun("", "stop", g.name)
			default:
				t.Errorf("run --detach with /%s -> %s: exit %d, want 1 (refused)%s\nstdout: %s\nstderr: %s",
					tc.path, target, code, map[bool]string{false: " or 0 (confined)", true: ""}[tc.refused], o, er)
			}
			e.clean(g.name)
			if after := treeOf(t, out); after != before {
				t.Errorf("the host directory the symlink points to changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// treeOf lists dir recursively: path, mode, size and content of files.
func treeOf(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", p, err)
			return nil
		}
		fmt.Fprintf(&b, "%s %v %d", strings.TrimPrefix(p, dir), fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			c, _ := os.ReadFile(p)
			fmt.Fprintf(&b, " %q", c)
		}
		b.WriteByte('\n')
		return nil
	})
	return b.String()
}

// TestGuestPID1Fds: the guest's PID 1 holds no file descriptor on anything
// outside the guest: only the console, /run/initctl, and its own pipes,
// sockets and anonymous inodes.
func TestGuestPID1Fds(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("fds", nil)
	g.boot()
	pid := e.status(g.name).PID
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		seen = append(seen, fd.Name()+" -> "+l)
		switch {
		case l == "/dev/console", l == "/run/initctl",
			strings.HasPrefix(l, "pipe:["), strings.HasPrefix(l, "socket:["), strings.HasPrefix(l, "anon_inode:"):
		default:
			t.Errorf("guest PID 1 (%d) fd %s -> %s: not the console, /run/initctl or its own pipe/socket/anon inode", pid, fd.Name(), l)
		}
	}
	t.Logf("PID 1 fds: %s", strings.Join(seen, ", "))
	if !slices.ContainsFunc(seen, func(s string) bool { return strings.HasSuffix(s, "-> /dev/console") }) {
		t.Errorf("guest PID 1 has no fd on /dev/console: %v", seen)
	}
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}

// TestSeccompRemount: inside a pretend-boot guest, a process of the guest
// (started by rcS) cannot remount a superblock (`mount -o remount,ro /`
// fails with EPERM) and the image's root stays writable; a bind remount is
// still allowed.
func TestSeccompRemount(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("secc", func(r *testguest.Root) {
		r.RcS(
			"mount -o remount,ro / 2>/run/remount.err; echo $? >/run/remount.rc",
			"mkdir -p /mnt/b && mount --bind /tmp /mnt/b && mount -o remount,bind,ro /mnt/b 2>/run/bindro.err; echo $? >/run/bindro.rc",
		)
	})
	g.boot()
	if rc := strings.TrimSpace(g.mustEnter("cat", "/run/remount.rc")); rc == "0" {
		t.Errorf("mount -o remount,ro / succeeded inside the guest")
	} else {
		t.Logf("remount,ro /: exit %s: %s", rc, strings.TrimSpace(g.mustEnter("cat", "/run/remount.err")))
	}
	if rc := strings.TrimSpace(g.mustEnter("cat", "/run/bindro.rc")); rc != "0" {
		t.Errorf("a bind remount read-only failed inside the guest (exit %s): %s", rc, g.mustEnter("cat", "/run/bindro.err"))
	}
	g.mustEnter("sh", "-c", "echo ok >/root/still-writable")
	if b, err := os.ReadFile(filepath.Join(g.home, "live", "root", "still-writable")); err != nil || string(b) != "ok\n" {
		t.Errorf("the root image is not writable after the remount attempt: %q, %v", b, err)
	}
	if opts := mountOpts(t, filepath.Join(g.home, "live")); !slices.Contains(opts, "rw") {
		t.Errorf("HOME/live is mounted %v, want rw", opts)
	}
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}

// mountOpts returns the superblock options of the mount at dir (host view).
func mountOpts(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var opts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) > 4 && f[4] == dir && sep > 0 && sep+3 < len(f) {
			opts = strings.Split(f[sep+3], ",") // the last mount on dir wins
		}
	}
	return opts
}

// TestEnterConfined: a process put into the guest by `subhost enter` is a
// guest process too (an admin's shell, a maintainer script run through
// it), and the guest's root can ptrace it (it keeps CAP_SYS_PTRACE and
// sees it in its PID namespace): it must be confined like PID 1, the same
// capability bounding set and the same seccomp guard, or the guest
// borrows what it lacks through it. Checked on a pretend-boot guest,
// whose root is the image's own filesystem, so a failed remount check
// makes only that image read-only.
func TestEnterConfined(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("enter", nil)
	g.boot()
	pid := e.status(g.name).PID
	host, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	inside := g.mustEnter("cat", "/proc/self/status")
	for _, field := range []string{"CapBnd", "Seccomp"} {
		want, got := statusField(string(host), field), statusField(inside, field)
		if got != want {
			t.Errorf("enter: %s %q, guest PID 1 has %q", field, got, want)
		}
	}
	if out, code := g.enter("mount", "-o", "remount,ro", "/"); code == 0 {
		t.Errorf("`subhost enter %s -- mount -o remount,ro /` succeeded: no seccomp guard on entered processes", g.name)
		if opts := mountOpts(t, filepath.Join(g.home, "live")); slices.Contains(opts, "ro") {
			t.Errorf("the root filesystem's superblock went read-only from enter: HOME/live now %v", opts)
		}
		g.enter("mount", "-o", "remount,rw", "/")
	} else {
		t.Logf("refused: %s", strings.TrimSpace(out))
	}
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}

// statusField is a field of /proc/PID/status ("CapBnd", "Seccomp").
func statusField(status, name string) string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
