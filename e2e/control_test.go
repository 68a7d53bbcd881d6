package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/imagebuild"
	"github.com/subhost/subhost/internal/testguest"
)

// The control pipeline as its users meet it: bin/subhost called through a
// symlink named control (argv0 dispatch, as `make install` sets it up),
// with SUBHOST=<dir> in the environment, and subhosts in $SUBHOST/NAME.
// Every guest root (an rbind's root, an overlay's layers, NAME.img) is on
// a scratch tmpfs: a guest may remount what it is given.

// controlTree is a $SUBHOST directory on a scratch tmpfs and a control
// symlink to the subhost binary.
type controlTree struct {
	e       *env
	subhost string   // $SUBHOST
	control string   // the symlink
	scratch string   // the tmpfs holding $SUBHOST and the BASE layers
	environ []string // more environment for control, e.g. BRIDGES=...
}

func newControlTree(e *env) *controlTree {
	e.t.Helper()
	scratch := testguest.Scratch(e.t)
	// Scratch is unmounted at cleanup, which runs last-registered first:
	// stop this test's subhosts before, or their mounts keep it busy.
	e.t.Cleanup(e.stopAll)
	c := &controlTree{e: e, subhost: filepath.Join(scratch, "subhosts"), scratch: scratch}
	if err := os.Mkdir(c.subhost, 0o755); err != nil {
		e.t.Fatal(err)
	}
	c.control = filepath.Join(e.t.TempDir(), "control")
	if err := os.Symlink(subhostBin(), c.control); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// home makes $SUBHOST/NAME with config (root-owned, 0644) and the given
// empty directories; it returns the home.
func (c *controlTree) home(name, config string, dirs ...string) string {
	c.e.t.Helper()
	h := filepath.Join(c.subhost, name)
	for _, d := range append([]string{""}, dirs...) {
		if err := os.MkdirAll(filepath.Join(h, d), 0o755); err != nil {
			c.e.t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(h, "config"), []byte(config+"\n"), 0o644); err != nil {
		c.e.t.Fatal(err)
	}
	return h
}

// busybox makes a busybox guest root on the scratch tmpfs, for BASE or for
// an rbind's root.
func (c *controlTree) busybox(rel string) *testguest.Root {
	return testguest.BusyboxRoot(c.e.t, filepath.Join(c.scratch, rel))
}

// image makes HOME/NAME.img: a bare ext4 with empty /root (the upper
// layer) and /work.
func (c *controlTree) image(home, name string) {
	c.e.t.Helper()
	src := filepath.Join(c.e.t.TempDir(), "img")
	for _, d := range []string{"root", "work"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			c.e.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := imagebuild.Build(ctx, imagebuild.Options{From: src, Image: filepath.Join(home, name+".img"), Table: "none", Size: testguest.ImageSize}); err != nil {
		c.e.t.Fatal(err)
	}
}

// command builds `control VERB --state-dir STATE NAME` with SUBHOST set,
// under `nsenter --net=/run/netns/NS` when ns is not empty.
func (c *controlTree) command(ctx context.Context, ns, verb, name string) *exec.Cmd {
	args := []string{verb, "--state-dir", c.e.state, name}
	var cmd *exec.Cmd
	if ns != "" {
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + testguest.NetnsPath(ns), "--", c.control}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, c.control, args...)
	}
	cmd.Env = append(append(os.Environ(), "LC_ALL=C", "SUBHOST="+c.subhost), c.environ...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs `control VERB NAME` with stdin, bounded by cmdTimeout, and
// returns its combined output and exit code.
func (c *controlTree) run(ns, verb, name, stdin string) (string, int) {
	c.e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := c.command(ctx, ns, verb, name)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		c.e.t.Fatalf("control %s %s: timed out after %v; output:\n%s", verb, name, cmdTimeout, out.String())
	}
	return out.String(), exitCode(err)
}

// session pipes a script into `control start NAME`, as a script driving
// the old control would, and fails the test unless it exits 0.
func (c *controlTree) session(ns, name, script string) string {
	c.e.t.Helper()
	out, code := c.run(ns, "start", name, script)
	if code != 0 {
		c.e.t.Fatalf("echo %q | control start %s: exit %d; output:\n%s", script, name, code, out)
	}
	return out
}

// stop runs `control stop NAME` and checks that nothing of it is left.
func (c *controlTree) stop(ns, name, home string) {
	c.e.t.Helper()
	if out, code := c.run(ns, "stop", name, ""); code != 0 {
		c.e.t.Fatalf("control stop %s: exit %d; output:\n%s", name, code, out)
	}
	c.e.clean(name)
	for _, m := range []string{"live", "mnt"} {
		if mounted(filepath.Join(home, m)) {
			c.e.t.Errorf("%s/%s is still mounted after control stop", home, m)
		}
	}
	if _, err := os.Stat(filepath.Join(c.e.state, name)); !os.IsNotExist(err) {
		c.e.t.Errorf("state of %s still there after control stop: %v", name, err)
	}
}

// hibernating checks what control's exit leaves: live mounted, the netns,
// and status hibernating with no guest process.
func (c *controlTree) hibernating(name, home string) {
	c.e.t.Helper()
	if !mounted(filepath.Join(home, "live")) {
		c.e.t.Errorf("%s/live is not mounted after the shell exited (no hibernation)", home)
	}
	if _, err := os.Lstat("/run/netns/" + name); err != nil {
		c.e.t.Errorf("netns %s gone after the shell exited: %v", name, err)
	}
	if r := c.e.status(name); r.State != "hibernating" || r.PID != 0 {
		c.e.t.Errorf("status after the shell exited: state %q pid %d, want hibernating and no pid", r.State, r.PID)
	}
}

// superOptions returns the superblock options of the mount on path, or "".
func superOptions(path string) string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) > 4 && f[4] == path && sep > 0 && sep+3 < len(f) {
			return f[sep+3]
		}
	}
	return ""
}

// mounted reports whether path is a mount point in this mount namespace.
func mounted(path string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// lastLine is the last non-empty line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(out, "\r", "")), "\n")
	return lines[len(lines)-1]
}

// processesWith lists the PIDs whose command line contains arg.
func processesWith(arg string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmd, err := os.ReadFile(d + "/cmdline")
		if err == nil && bytes.Contains(cmd, []byte(arg)) {
			out = append(out, filepath.Base(d))
		}
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v", err)
	}
	return string(b)
}

// TestControlLayouts runs the control script's cycle on each of its root
// layouts: a shell session fed by a pipe writes a marker into the right
// upper directory and exits; the subhost hibernates (live and netns
// kept); start again re-enters and sees the marker; stop removes
// everything.
func TestControlLayouts(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup makes the home of subhost n and returns it and where the
		// guest's /root/mark lands on the host.
		setup func(c *controlTree, n string) (home, mark string)
		// check, when set, runs more checks in a session.
		check func(t *testing.T, c *controlTree, n string)
	}{
		{"rbind", func(c *controlTree, n string) (string, string) {
			// No BASE: live is an rbind of root, the whole guest.
			h := c.home(n, "# no BASE: rbind")
			c.busybox(filepath.Join("subhosts", n, "root"))
			return h, filepath.Join(h, "root/root/mark")
		}, nil},
		{"overlay", func(c *controlTree, n string) (string, string) {
			base := c.busybox("base")
			h := c.home(n, "BASE="+base.Dir, "root", "work")
			return h, filepath.Join(h, "root/root/mark")
		}, nil},
		{"overlay-two-bases", func(c *controlTree, n string) (string, string) {
			base := c.busybox("base")
			base.WriteFile("etc/layer", "bottom\n", 0o644)
			base.WriteFile("etc/bottom-only", "from the bottom layer\n", 0o644)
			top := filepath.Join(c.scratch, "top")
			if err := os.MkdirAll(filepath.Join(top, "etc"), 0o755); err != nil {
				c.e.t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(top, "etc/layer"), []byte("top\n"), 0o644); err != nil {
				c.e.t.Fatal(err)
			}
			// Uppermost first, as overlayfs's lowerdir lists them.
			h := c.home(n, "BASE="+top+":"+base.Dir, "root", "work")
			return h, filepath.Join(h, "root/root/mark")
		}, func(t *testing.T, c *controlTree, n string) {
			out := c.session("", n, "cat /etc/layer /etc/bottom-only; exit\n")
			if !strings.Contains(out, "top\r\nfrom the bottom layer") && !strings.Contains(out, "top\nfrom the bottom layer") {
				t.Errorf("the guest does not see top over bottom; output:\n%s", out)
			}
		}},
		{"image", func(c *controlTree, n string) (string, string) {
			// NAME.img: a bare ext4 with /root (the upper layer) and
			// /work, mounted on HOME/mnt.
			base := c.busybox("base")
			h := c.home(n, "BASE="+base.Dir)
			c.image(h, n)
			return h, filepath.Join(h, "mnt/root/root/mark")
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			c := newControlTree(e)
			n := e.name("ctl")
			h, mark := tc.setup(c, n)
			token := "mark-" + n

			c.session("", n, "echo "+token+" >/root/mark; exit\n")
			if got := readFile(t, mark); got != token+"\n" {
				t.Errorf("%s holds %q, want %q", mark, got, token+"\n")
			}
			c.hibernating(n, h)

			out := c.session("", n, "cat /root/mark; exit\n")
			if !strings.Contains(out, token) {
				t.Errorf("re-entering %s did not see the marker; output:\n%s", n, out)
			}
			if tc.check != nil {
				tc.check(t, c, n)
			}
			c.hibernating(n, h)
			c.stop("", n, h)
		})
	}
}

// TestControlPty drives `control start` on a terminal, as a user does: a
// prompt, commands and their output, exit; the subhost hibernates; start
// again re-enters with what the first session left; stop cleans up.
func TestControlPty(t *testing.T) {
	e := newEnv(t)
	c := newControlTree(e)
	base := c.busybox("base")
	n := e.name("pty")
	h := c.home(n, "BASE="+base.Dir, "root", "work")

	s := c.startPty("", "start", n)
	at := s.expect(0, "# ", 30*time.Second)
	s.send("echo $((6 * 7)) $(hostname)\r")
	at = s.expect(at, "42 "+n, 10*time.Second)
	// A background process must not outlive the session.
	s.send("sleep 987654 & echo pty-$((2 + 2)) >/root/mark; tty; exit\r")
	if code := s.wait(30 * time.Second); code != 0 {
		t.Fatalf("control start on a pty: exit %d; output:\n%s", code, tail(s.Output(), 2000))
	}
	if !strings.Contains(s.Output()[at:], "/dev/console") {
		t.Errorf("the shell's terminal is not /dev/console; output:\n%s", tail(s.Output(), 2000))
	}
	// On a terminal, control says how the guest ended and what is left.
	if last := lastLine(s.Output()); !strings.Contains(last, "hibernating") || strings.Contains(last, "guest ;") {
		t.Errorf("control's last words: %q; want how the guest ended and that %s is hibernating", last, n)
	}
	c.hibernating(n, h)
	if pids := processesWith("987654"); len(pids) > 0 {
		t.Errorf("guest processes %v outlived the session", pids)
	}

	s = c.startPty("", "start", n)
	at = s.expect(0, "# ", 30*time.Second)
	s.send("cat /root/mark\r")
	s.expect(at, "pty-4", 10*time.Second)
	s.send("exit\r")
	if code := s.wait(30 * time.Second); code != 0 {
		t.Fatalf("re-entering on a pty: exit %d; output:\n%s", code, tail(s.Output(), 2000))
	}
	c.hibernating(n, h)
	c.stop("", n, h)
}

// startPty runs `control VERB NAME` on a new pty, like env.startPty.
func (c *controlTree) startPty(ns, verb, name string) *ptySession {
	c.e.t.Helper()
	return c.e.startCmdPty(c.command(context.Background(), ns, verb, name), "control "+verb+" "+name)
}

// TestControlBridges gives a control subhost two bridges of a test
// network namespace, from its config or from the environment as the
// script allowed: inside, eth0 and eth1 with the configured MACs; on the
// host side NAME0 and NAME1, ports of those bridges; the guest reaches
// the bridge's address. Hibernation keeps the cables; stop removes them.
func TestControlBridges(t *testing.T) {
	for _, fromEnv := range []bool{false, true} {
		t.Run(map[bool]string{false: "config", true: "environment"}[fromEnv], func(t *testing.T) {
			testControlBridges(t, fromEnv)
		})
	}
}

func testControlBridges(t *testing.T, fromEnv bool) {
	e := newEnv(t)
	ns, sub := e.testnet()
	testguest.Bridge(t, ns, "br1", "")
	c := newControlTree(e)
	base := c.busybox("base")
	n := e.name("cbr")
	mac0, mac1 := fmt.Sprintf("06:a7:dd:b4:%02x:02", sub), fmt.Sprintf("06:a7:dd:b4:%02x:03", sub)
	bridges := fmt.Sprintf("br0:%s br1:%s", strings.ToUpper(mac0), mac1)
	config := fmt.Sprintf("BASE=%s\nBRIDGES=( %s )", base.Dir, bridges)
	if fromEnv {
		config = "BASE=" + base.Dir
		c.environ = []string{"BRIDGES=" + bridges}
	}
	h := c.home(n, config, "root", "work")

	out := c.session(ns, n, strings.Join([]string{
		"cat /sys/class/net/eth0/address /sys/class/net/eth1/address",
		fmt.Sprintf("ip addr add 198.18.%d.2/24 dev eth0", sub),
		fmt.Sprintf("ping -c 1 -W 5 198.18.%d.1 >/dev/null && echo ping-ok", sub),
		"exit",
	}, "\n")+"\n")
	for _, want := range []string{mac0, mac1, "ping-ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("guest output lacks %q:\n%s", want, out)
		}
	}
	hostLinks := func() string {
		o, _ := exec.Command("ip", "-n", ns, "-o", "link", "show").CombinedOutput()
		return string(o)
	}
	links := hostLinks()
	for i, br := range []string{"br0", "br1"} {
		if !strings.Contains(links, fmt.Sprintf(" %s%d@", n, i)) || !strings.Contains(links, "master "+br) {
			t.Errorf("no host end %s%d in %s:\n%s", n, i, br, links)
		}
	}
	for _, line := range strings.Split(links, "\n") {
		if strings.Contains(line, fmt.Sprintf(" %s0@", n)) && !strings.Contains(line, "master br0") {
			t.Errorf("%s0 is not a port of br0: %s", n, line)
		}
		if strings.Contains(line, fmt.Sprintf(" %s1@", n)) && !strings.Contains(line, "master br1") {
			t.Errorf("%s1 is not a port of br1: %s", n, line)
		}
	}
	c.hibernating(n, h)
	if !strings.Contains(hostLinks(), " "+n+"0@") {
		t.Errorf("hibernation dropped the host end %s0", n)
	}
	out = c.session(ns, n, "cat /sys/class/net/eth1/address; exit\n")
	if !strings.Contains(out, mac1) {
		t.Errorf("re-entered guest lacks eth1 %s:\n%s", mac1, out)
	}
	c.stop(ns, n, h)
	if links := hostLinks(); strings.Contains(links, " "+n) {
		t.Errorf("host ends left after stop:\n%s", links)
	}
}

// TestControlRemountGuard runs a guest on an rbind of a directory of a
// scratch tmpfs and has it try what Debian's shutdown does, `mount -o
// remount,ro /`: the seccomp guard refuses it, and the scratch
// filesystem (the host's, as far as the guest knows) stays writable.
func TestControlRemountGuard(t *testing.T) {
	e := newEnv(t)
	c := newControlTree(e)
	n := e.name("grd")
	h := c.home(n, "# no BASE: rbind")
	c.busybox(filepath.Join("subhosts", n, "root"))

	out := c.session("", n, strings.Join([]string{
		"mount -o remount,ro / ; echo remount-exit=$?",
		"touch /root/still-writable && echo touch-ok",
		"exit",
	}, "\n")+"\n")
	if !strings.Contains(out, "remount-exit=") || strings.Contains(out, "remount-exit=0") {
		t.Errorf("the guest's remount of / was not refused; output:\n%s", out)
	}
	if !strings.Contains(out, "touch-ok") {
		t.Errorf("the guest's / is no longer writable; output:\n%s", out)
	}
	if err := os.WriteFile(filepath.Join(c.scratch, "probe"), []byte("x"), 0o644); err != nil {
		t.Errorf("the scratch filesystem is no longer writable after the guest's remount: %v", err)
	}
	for _, m := range []string{c.scratch, filepath.Join(h, "live")} {
		if opts := superOptions(m); opts == "" || strings.Contains(","+opts+",", ",ro,") {
			t.Errorf("superblock options of %s: %q, want rw", m, opts)
		}
	}
	c.hibernating(n, h)
	c.stop("", n, h)
}

// TestControlOutputTail pipes short sessions into control start on a busy
// host (the test keeps every CPU busy meanwhile): everything the
// guest wrote before its session ended must reach the terminal of
// `control start`, its last line included. (The supervisor must not close
// the console before it has read what the guest wrote last.)
func TestControlOutputTail(t *testing.T) {
	e := newEnv(t)
	c := newControlTree(e)
	base := c.busybox("base")
	n := e.name("tail")
	h := c.home(n, "BASE="+base.Dir, "root", "work")
	stop := busyCPUs(t)
	lost := 0
	const sessions = 20
	for i := range sessions {
		out := c.session("", n, fmt.Sprintf("echo tail-%d-$((40 + 2)); exit\n", i))
		if !strings.Contains(out, fmt.Sprintf("tail-%d-42", i)) {
			lost++
			t.Logf("session %d: output ends:\n%s", i, tail(out, 200))
		}
	}
	stop()
	if lost > 0 {
		t.Errorf("in %d of %d sessions the last line the guest printed never arrived", lost, sessions)
	}
	c.stop("", n, h)
}

// busyCPUs keeps every CPU busy with shell loops (two per CPU) until the
// returned function is called, or the test ends.
func busyCPUs(t *testing.T) (stop func()) {
	var loops []*exec.Cmd
	for range 2 * runtime.NumCPU() {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		loops = append(loops, cmd)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			for _, cmd := range loops {
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
