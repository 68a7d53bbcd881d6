package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/guestexit"
	"github.com/subhost/subhost/internal/testbin"
	"github.com/subhost/subhost/sdk/stagetest"
)

// The test binary doubles as the launcher: started with launchEnv set,
// in new mount, PID, UTS and IPC namespaces, it is the guest's PID 1
// and sets up what plugins/init does (mounts, chroot instead of
// pivot_root) before it execs /sbin/subhost-init with its own arguments.
const (
	launchEnv      = "SUBHOST_INIT_TEST_ROOT"
	dropSysBootEnv = "SUBHOST_INIT_TEST_DROP_SYS_BOOT"
	// cgroupEnv names a cgroup directory the launcher joins first.
	cgroupEnv = "SUBHOST_INIT_TEST_CGROUP"
	// vhangupEnv makes the test binary hang up its controlling
	// terminal and exit, as a getty does on the console.
	vhangupEnv = "SUBHOST_INIT_TEST_VHANGUP"
)

var (
	buildOnce sync.Once
	buildDir  string
	initBin   string
	buildErr  error
)

func TestMain(m *testing.M) {
	if root := os.Getenv(launchEnv); root != "" {
		launch(root)
	}
	if os.Getenv(vhangupEnv) != "" {
		signal.Ignore(syscall.SIGHUP) // the hang-up's own, as the terminal's controller
		if _, _, e := unix.Syscall(unix.SYS_VHANGUP, 0, 0, 0); e != 0 {
			err := error(e)
			fmt.Fprintln(os.Stderr, "vhangup:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func launch(root string) {
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "test launcher: %s: %v\n", what, err)
		os.Exit(97)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fail("make / private", err)
	}
	for _, m := range []struct{ fstype, dir, opts string }{
		{"proc", "proc", ""},
		{"tmpfs", "run", "mode=0755"},
		{"tmpfs", "dev", "mode=0755"},
	} {
		if err := unix.Mount(m.fstype, filepath.Join(root, m.dir), m.fstype, unix.MS_NOSUID, m.opts); err != nil {
			fail("mount "+m.dir, err)
		}
	}
	for name, dev := range map[string]uint64{"null": unix.Mkdev(1, 3), "zero": unix.Mkdev(1, 5)} {
		if err := unix.Mknod(filepath.Join(root, "dev", name), unix.S_IFCHR|0o666, int(dev)); err != nil {
			fail("mknod "+name, err)
		}
	}
	if dir := os.Getenv(cgroupEnv); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("0"), 0); err != nil {
			fail("join "+dir, err)
		}
	}
	if os.Getenv(dropSysBootEnv) != "" {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, unix.CAP_SYS_BOOT, 0, 0, 0); err != nil {
			fail("drop CAP_SYS_BOOT", err)
		}
	}
	if err := unix.Chroot(root); err != nil {
		fail("chroot", err)
	}
	if err := os.Chdir("/"); err != nil {
		fail("chdir", err)
	}
	env := []string{"container=subhost", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=vt100"}
	err := syscall.Exec("/sbin/subhost-init", append([]string{"/sbin/subhost-init"}, os.Args[1:]...), env)
	fail("exec /sbin/subhost-init", err)
}

// binary builds subhost-init once per test run, as the Makefile does.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "subhost-init-test."); buildErr != nil {
			return
		}
		bin := filepath.Join(buildDir, "subhost-init")
		if buildErr = testbin.Build(bin, "./cmd/subhost-init"); buildErr == nil {
			initBin = bin
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return initBin
}

const defaultRC = `#!/bin/sh
echo "rc $1 RUNLEVEL=$RUNLEVEL PREVLEVEL=$PREVLEVEL" >>/markers/log
`

const defaultRCS = `#!/bin/sh
echo "rcS container=$container RUNLEVEL=$RUNLEVEL" >>/markers/log
`

// newRoot makes a busybox guest root on a tmpfs of its own. files maps
// guest paths to script content ("" deletes the default one); a value
// starting with "->" makes a symlink, one starting with "-x" a file
// that is not executable.
func newRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	bin := binary(t)
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "mode=0755,size=64m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", root, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(root, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", root, err)
		}
	})
	for _, d := range []string{"bin", "sbin", "etc/init.d", "lib/init", "proc", "run", "dev", "root", "tmp", "markers"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	copyFile(t, "/bin/busybox", filepath.Join(root, "bin/busybox"))
	copyFile(t, bin, filepath.Join(root, "sbin/subhost-init"))
	list, err := exec.Command("/bin/busybox", "--list").Output()
	must(t, err)
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" {
			must(t, os.Symlink("busybox", filepath.Join(root, "bin", a)))
		}
	}
	all := map[string]string{"/etc/init.d/rcS": defaultRCS, "/etc/init.d/rc": defaultRC}
	for k, v := range files {
		all[k] = v
	}
	for path, content := range all {
		p := filepath.Join(root, path)
		os.Remove(p)
		switch {
		case content == "":
		case strings.HasPrefix(content, "->"):
			must(t, os.Symlink(content[2:], p))
		case strings.HasPrefix(content, "-x"):
			must(t, os.WriteFile(p, []byte(content[2:]), 0o644))
		default:
			must(t, os.WriteFile(p, []byte(content), 0o755))
		}
	}
	return root
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	must(t, err)
	must(t, os.WriteFile(to, b, 0o755))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// guest is a running subhost-init under test, its console on a pty.
type guest struct {
	t    *testing.T
	root string
	cmd  *exec.Cmd
	pid  int // in the host's PID namespace
	ptm  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	read chan struct{} // closed when the console has nothing more to say
	ws   syscall.WaitStatus
}

// boot starts subhost-init as PID 1 on root. env adds launcher settings.
func boot(t *testing.T, root string, env []string, args ...string) *guest {
	t.Helper()
	ptm, pts, err := pty.Open()
	must(t, err)
	g := &guest{t: t, root: root, ptm: ptm, done: make(chan struct{})}
	g.cmd = exec.Command("/proc/self/exe", args...)
	g.cmd.Env = append([]string{launchEnv + "=" + root}, env...)
	g.cmd.Stdin, g.cmd.Stdout, g.cmd.Stderr = pts, pts, pts
	g.cmd.SysProcAttr = &syscall.SysProcAttr{
		// A network namespace of its own, as a subhost has: PID 1's
		// enter socket is abstract, one per network namespace.
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET,
		Setsid:     true,
		Setctty:    true,
		Ctty:       0,
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start guest: %v", err)
	}
	pts.Close()
	g.pid = g.cmd.Process.Pid
	g.read = make(chan struct{})
	go func() {
		defer close(g.read)
		buf := make([]byte, 4096)
		for {
			n, err := ptm.Read(buf)
			g.mu.Lock()
			g.out.Write(buf[:n])
			g.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		g.cmd.Wait()
		g.ws = g.cmd.ProcessState.Sys().(syscall.WaitStatus)
		close(g.done)
	}()
	t.Cleanup(func() {
		select {
		case <-g.done:
		default:
			g.cmd.Process.Kill()
			<-g.done
		}
		ptm.Close()
		<-g.read
		if t.Failed() {
			t.Logf("console:\n%s", g.console())
		}
	})
	return g
}

func (g *guest) console() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.ReplaceAll(g.out.String(), "\r\n", "\n")
}

// log is what the guest's scripts wrote to /markers/log.
func (g *guest) log() []string {
	b, _ := os.ReadFile(filepath.Join(g.root, "markers/log"))
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (g *guest) running() bool {
	select {
	case <-g.done:
		return false
	default:
		return true
	}
}

// until polls cond for up to d and fails the test with what if it never
// holds.
func (g *guest) until(d time.Duration, what string, cond func() bool) {
	g.t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			g.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

func (g *guest) waitConsole(s string) {
	g.t.Helper()
	g.until(10*time.Second, fmt.Sprintf("%q on the console", s), func() bool { return strings.Contains(g.console(), s) })
}

func (g *guest) waitLog(line string) {
	g.t.Helper()
	g.until(10*time.Second, fmt.Sprintf("%q in /markers/log", line), func() bool {
		for _, l := range g.log() {
			if strings.HasPrefix(l, line) {
				return true
			}
		}
		return false
	})
}

// booted waits until rc 2 has run.
func (g *guest) booted() {
	g.t.Helper()
	g.waitLog("rc 2")
}

// wait waits for PID 1 to end and returns how.
func (g *guest) wait(d time.Duration) guestexit.Outcome {
	g.t.Helper()
	select {
	case <-g.done:
	case <-time.After(d):
		g.t.Fatalf("guest still running after %v", d)
	}
	// Every process of the guest is gone with its PID 1, so the console
	// pty has no writer left: read it to the end.
	select {
	case <-g.read:
	case <-time.After(5 * time.Second):
		g.t.Errorf("the console is still open 5s after PID 1 ended")
	}
	return guestexit.Classify(g.ws)
}

func (g *guest) signal(sig syscall.Signal) {
	g.t.Helper()
	if err := syscall.Kill(g.pid, sig); err != nil {
		g.t.Fatalf("kill %d %v: %v", g.pid, sig, err)
	}
}

// initctl writes b into the guest's /run/initctl, as a process inside
// would (through /proc/PID/root: the guest's /run is in its own mount
// namespace).
func (g *guest) initctl(b []byte) error {
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/root/run/initctl", g.pid), os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(b)
	return err
}

// proc is one process of the guest, seen from the host.
type proc struct {
	pid, ppid, pgrp, session, ttyNr, tpgid int
	comm, state                            string
}

// procs lists the processes in the guest's PID namespace.
func (g *guest) procs() []proc {
	g.t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", g.pid))
	if err != nil {
		g.t.Fatalf("guest PID namespace: %v", err)
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []proc
	for _, d := range dirs {
		if n, err := os.Readlink(d + "/ns/pid"); err != nil || n != ns {
			continue
		}
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		f := strings.Fields(s[close+1:])
		p := proc{comm: s[open+1 : close], state: f[0]}
		p.pid, _ = strconv.Atoi(filepath.Base(d))
		for i, v := range []*int{&p.ppid, &p.pgrp, &p.session, &p.ttyNr, &p.tpgid} {
			*v, _ = strconv.Atoi(f[1+i])
		}
		out = append(out, p)
	}
	return out
}

// setup is the start of every test that runs a guest.
func setup(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Fatalf("needs a static busybox at /bin/busybox (apt-get install busybox-static): %v", err)
	}
}

// count counts console lines that contain s.
func count(text, s string) int {
	n := 0
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}
