package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/guestexit"
	"github.com/subhost/subhost/internal/initctl"
)

func runlevel(rl rune) []byte {
	return initctl.Request{Cmd: initctl.CmdRunlevel, Runlevel: int32(rl)}.Marshal()
}

func setenvRequest(s string) []byte {
	r := initctl.Request{Cmd: initctl.CmdSetenv}
	copy(r.Data[:], s+"\x00")
	return r.Marshal()
}

// announced reports whether PID 1 said on the console con that it got
// request req: "subhost-init: REQ" ends its line, or goes on with the
// boot script it stops when the request came before that script ended
// (booted sees the script's marker, not its exit).
func announced(con, req string) bool {
	line := "subhost-init: " + req
	return strings.Contains(con, line+"\n") || strings.Contains(con, line+"; stopping ")
}

// endsWith checks the outcome and the shutdown runlevel that ran.
func endsWith(t *testing.T, g *guest, want guestexit.Outcome) {
	t.Helper()
	if got := g.wait(15 * time.Second); got != want {
		t.Errorf("guest ended with %s, want %s", guestexit.Describe(g.ws), want)
	}
	rc := "rc 0"
	if want == guestexit.Reboot {
		rc = "rc 6"
	}
	log := strings.Join(g.log(), "\n")
	if !strings.Contains(log, rc) {
		t.Errorf("no %q in the scripts' log:\n%s", rc, log)
	}
}

func TestInitctlRequests(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes [][]byte
		want   guestexit.Outcome
		note   string
	}{
		{"runlevel 0", [][]byte{runlevel('0')}, guestexit.PowerOff, "power off (/run/initctl: runlevel 0)"},
		{"runlevel 6", [][]byte{runlevel('6')}, guestexit.Reboot, "reboot (/run/initctl: runlevel 6)"},
		{"shutdown -h", [][]byte{setenvRequest("INIT_HALT=POWEROFF"), runlevel('0')}, guestexit.PowerOff, `ignoring /run/initctl request: SETENV "INIT_HALT=POWEROFF"`},
		{"both in one write", [][]byte{append(runlevel('2'), runlevel('6')...)}, guestexit.Reboot, "ignoring /run/initctl request: runlevel 2"},
		{"bad magic", [][]byte{make([]byte, initctl.Size)}, guestexit.PowerOff, "power off (/run/initctl: bad magic 0x00000000)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setup(t)
			g := boot(t, newRoot(t, nil), nil)
			g.booted()
			for _, w := range tc.writes {
				must(t, g.initctl(w))
			}
			endsWith(t, g, tc.want)
			if !strings.Contains(g.console(), tc.note) {
				t.Errorf("console lacks %q", tc.note)
			}
		})
	}
}

func TestIgnoredRequestsKeepRunning(t *testing.T) {
	setup(t)
	g := boot(t, newRoot(t, nil), nil)
	g.booted()
	for _, w := range [][]byte{runlevel('2'), runlevel('S'), runlevel('q'), setenvRequest("A=B"),
		initctl.Request{Cmd: initctl.CmdPowerFail}.Marshal()} {
		must(t, g.initctl(w))
	}
	g.waitConsole("ignoring /run/initctl request: power status 2")
	time.Sleep(200 * time.Millisecond)
	if !g.running() {
		t.Fatalf("guest ended after requests that must be ignored: %s", guestexit.Describe(g.ws))
	}
	must(t, g.initctl(runlevel('0')))
	endsWith(t, g, guestexit.PowerOff)
}

func TestSignals(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		want guestexit.Outcome
		name string
	}{
		{syscall.SIGPWR, guestexit.PowerOff, "SIGPWR"},
		{syscall.SIGUSR1, guestexit.PowerOff, "SIGUSR1"},
		{syscall.SIGUSR2, guestexit.PowerOff, "SIGUSR2"},
		{sigRTMIN + 3, guestexit.PowerOff, "SIGRTMIN+3"},
		{sigRTMIN + 4, guestexit.PowerOff, "SIGRTMIN+4"},
		{syscall.SIGINT, guestexit.Reboot, "SIGINT"},
		{syscall.SIGTERM, guestexit.Reboot, "SIGTERM"},
		{sigRTMIN + 5, guestexit.Reboot, "SIGRTMIN+5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setup(t)
			g := boot(t, newRoot(t, nil), nil)
			g.booted()
			g.signal(tc.sig)
			endsWith(t, g, tc.want)
			if want := fmt.Sprintf("%s (%s)", tc.want, tc.name); !announced(g.console(), want) {
				t.Errorf("console lacks %q", "subhost-init: "+want)
			}
		})
	}
}

// busybox's poweroff and reboot inside the guest signal PID 1.
func TestGuestCommands(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		want guestexit.Outcome
	}{
		{"poweroff", guestexit.PowerOff},
		{"halt", guestexit.PowerOff},
		{"reboot", guestexit.Reboot},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			setup(t)
			rc := defaultRC + `[ "$1" = 2 ] && (sleep 0.1; ` + tc.cmd + `) &` + "\nexit 0\n"
			g := boot(t, newRoot(t, map[string]string{"/etc/init.d/rc": rc}), nil)
			endsWith(t, g, tc.want)
		})
	}
}

func TestDroppedSignals(t *testing.T) {
	setup(t)
	// The scripts must not inherit ignored or blocked signals, but for
	// 32 and 34 (see ignoreUnhandledSignals).
	rc := defaultRC + `grep -E '^Sig(Ign|Blk)' /proc/self/status | tr '\t' ' ' >>/markers/log` + "\n"
	g := boot(t, newRoot(t, map[string]string{"/etc/init.d/rc": rc}), nil)
	g.booted()
	for _, s := range []syscall.Signal{syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGILL, syscall.SIGTRAP,
		syscall.SIGABRT, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGSEGV, syscall.SIGPIPE, syscall.SIGALRM,
		syscall.SIGSTKFLT, syscall.SIGCHLD, syscall.SIGCONT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU,
		syscall.SIGURG, syscall.SIGXCPU, syscall.SIGXFSZ, syscall.SIGVTALRM, syscall.SIGPROF, syscall.SIGWINCH,
		syscall.SIGIO, syscall.SIGSYS, 32, 33, 34, 35, 36, 40, 50, 64} {
		// A storm: a signal that arrives while a Go thread runs a
		// handler (every signal blocked) takes another path in the
		// kernel.
		for range 50 {
			g.signal(s)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if !g.running() {
		t.Fatalf("PID 1 died of a signal it must drop: %s", guestexit.Describe(g.ws))
	}
	if strings.Contains(g.console(), "power off") || strings.Contains(g.console(), "reboot") {
		t.Fatalf("a dropped signal started a shutdown")
	}
	g.signal(syscall.SIGPWR)
	endsWith(t, g, guestexit.PowerOff)
	log := strings.Join(g.log(), "\n")
	for _, w := range []string{"SigBlk: 0000000000000000", "SigIgn: 0000000280000000"} {
		if !strings.Contains(log, w) {
			t.Errorf("scripts do not start with %q:\n%s", w, log)
		}
	}
}

// 1000 writes to /run/initctl, concurrent, valid or garbage: exactly one
// orderly shutdown.
func TestConcurrentInitctlWrites(t *testing.T) {
	setup(t)
	g := boot(t, newRoot(t, nil), nil)
	g.booted()
	payloads := [][]byte{[]byte("x\n"), runlevel('0'), runlevel('6'), setenvRequest("INIT_HALT=POWEROFF"),
		runlevel('2'), make([]byte, 1000), []byte{}}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 1000 {
		p := payloads[i%len(payloads)]
		if i%7 == 6 {
			p = make([]byte, rand.IntN(2*initctl.Size))
			for j := range p {
				p[j] = byte(rand.IntN(256))
			}
		}
		wg.Go(func() {
			<-start
			g.initctl(p) // errors are expected once the guest is gone
		})
	}
	close(start)
	wg.Wait()
	g.wait(15 * time.Second)
	if o := guestexit.Classify(g.ws); o == guestexit.Crashed {
		t.Errorf("guest ended with %s", guestexit.Describe(g.ws))
	}
	shutdowns := 0
	for _, l := range g.log() {
		if strings.HasPrefix(l, "rc 0") || strings.HasPrefix(l, "rc 6") {
			shutdowns++
		}
	}
	con := g.console()
	decisions := count(con, "subhost-init: power off (") + count(con, "subhost-init: reboot (")
	if shutdowns != 1 || decisions != 1 || count(con, "running /etc/init.d/rc ") != 2 {
		t.Errorf("%d shutdown scripts ran and %d shutdowns were announced; want 1 and 1", shutdowns, decisions)
	}
}

func TestOrphansReaped(t *testing.T) {
	setup(t)
	rcS := defaultRCS + `
# 50 orphans that end at once, 50 that end a little later, and a
# double-forked daemon that stays
for i in $(seq 50); do ( true & ); ( sleep 0.1 & ); done
( setsid sleep 1000 </dev/null >/dev/null 2>&1 & )
sleep 0.5
echo "rcS done" >>/markers/log
`
	g := boot(t, newRoot(t, map[string]string{"/etc/init.d/rcS": rcS}), nil)
	noZombies := func(when string) {
		t.Helper()
		for _, p := range g.procs() {
			if p.state == "Z" {
				t.Errorf("%s: zombie %d (%s), parent %d", when, p.pid, p.comm, p.ppid)
			}
		}
	}
	g.waitConsole("running /etc/init.d/rcS")
	time.Sleep(300 * time.Millisecond) // the orphans have ended, rcS still runs
	noZombies("while rcS runs")
	g.booted()
	time.Sleep(200 * time.Millisecond)
	noZombies("after boot")
	var daemon *proc
	for _, p := range g.procs() {
		if p.comm == "sleep" {
			daemon = &p
		}
	}
	if daemon == nil || daemon.ppid != g.pid {
		t.Fatalf("the daemon is not a child of PID 1: %+v", daemon)
	}
	t0 := time.Now()
	g.signal(syscall.SIGPWR)
	endsWith(t, g, guestexit.PowerOff)
	if !strings.Contains(g.console(), "sending SIGTERM to all processes") || strings.Contains(g.console(), "SIGKILL") {
		t.Errorf("the daemon was not ended by SIGTERM alone")
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("shutdown took %v with nothing left after SIGTERM: the grace period must end early", d)
	}
}

func TestStubbornProcessesKilled(t *testing.T) {
	setup(t)
	rc := defaultRC + `[ "$1" = 2 ] && sh -c 'trap "" TERM; echo $$ >/markers/stubborn; exec sleep 1000' &` + "\nexit 0\n"
	g := boot(t, newRoot(t, map[string]string{"/etc/init.d/rc": rc}), nil, "--shutdown-timeout", "1s")
	g.booted()
	g.until(5*time.Second, "the stubborn process", func() bool {
		_, err := os.Stat(filepath.Join(g.root, "markers/stubborn"))
		return err == nil
	})
	t0 := time.Now()
	g.signal(syscall.SIGUSR2)
	endsWith(t, g, guestexit.PowerOff)
	d := time.Since(t0)
	if !strings.Contains(g.console(), "sending SIGKILL to all processes") {
		t.Errorf("no SIGKILL for a process that ignores SIGTERM")
	}
	// The grace is a sixth of the 1s the whole shutdown may take.
	if d < 150*time.Millisecond || d > 4*time.Second {
		t.Errorf("shutdown took %v; want the grace period and not much more", d)
	}
}

func TestShutdownScriptTimeout(t *testing.T) {
	setup(t)
	rc := defaultRC + `[ "$1" = 0 ] && exec sleep 1000` + "\nexit 0\n"
	g := boot(t, newRoot(t, map[string]string{"/etc/init.d/rc": rc}), nil, "--shutdown-timeout", "1s")
	g.booted()
	t0 := time.Now()
	g.signal(syscall.SIGPWR)
	endsWith(t, g, guestexit.PowerOff)
	// rc 0 gets the 1s less two graces and a margin; then the rest.
	if d := time.Since(t0); d < 400*time.Millisecond || d > 4*time.Second {
		t.Errorf("shutdown took %v; want about the 1s timeout", d)
	}
	if !strings.Contains(g.console(), "/etc/init.d/rc 0 did not finish in time (the shutdown may take 1s in all)") {
		t.Errorf("no note about the hung rc 0")
	}
}

func TestShutdownDuringBoot(t *testing.T) {
	setup(t)
	rcS := defaultRCS + "exec sleep 1000\n"
	g := boot(t, newRoot(t, map[string]string{"/etc/init.d/rcS": rcS}), nil)
	g.waitLog("rcS")
	g.signal(syscall.SIGPWR)
	endsWith(t, g, guestexit.PowerOff)
	if !strings.Contains(g.console(), "power off (SIGPWR); stopping /etc/init.d/rcS") {
		t.Errorf("console does not say the boot was stopped")
	}
	if log := strings.Join(g.log(), "\n"); strings.Contains(log, "rc 2") {
		t.Errorf("runlevel 2 ran after a shutdown request:\n%s", log)
	}
}

// Without CAP_SYS_BOOT reboot(2) fails: the exit status says the same.
func TestWithoutCapSysBoot(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		want guestexit.Outcome
		code int
	}{
		{syscall.SIGPWR, guestexit.PowerOff, guestexit.ExitPowerOff},
		{syscall.SIGTERM, guestexit.Reboot, guestexit.ExitReboot},
	} {
		t.Run(tc.want.String(), func(t *testing.T) {
			setup(t)
			g := boot(t, newRoot(t, nil), []string{dropSysBootEnv + "=1"})
			g.booted()
			g.signal(tc.sig)
			endsWith(t, g, tc.want)
			if !g.ws.Exited() || g.ws.ExitStatus() != tc.code {
				t.Errorf("guest ended with %s, want exit status %d", guestexit.Describe(g.ws), tc.code)
			}
			if want := fmt.Sprintf("reboot(2): operation not permitted; exiting with status %d", tc.code); !strings.Contains(g.console(), want) {
				t.Errorf("console lacks %q", want)
			}
		})
	}
}

// A console whose output is stopped (a viewer's ^S; a guest's tcflow)
// stops what writes to it, never PID 1: it still powers off when asked
// and runs rc 0, its own line on the console lost rather than waited for.
func TestStoppedConsoleDoesNotStopPID1(t *testing.T) {
	setup(t)
	g := boot(t, newRoot(t, nil), nil, "--shutdown-timeout", "3s")
	g.booted()
	if _, err := g.ptm.Write([]byte{0x13}); err != nil { // ^S
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	g.signal(syscall.SIGPWR)
	g.waitLog("rc 0")
	g.ptm.Write([]byte{0x11}) // ^Q: what is left drains
	endsWith(t, g, guestexit.PowerOff)
}

// A vhangup of the console (a getty's) hangs up every open file of it,
// PID 1's standard streams too: PID 1's own lines and the scripts it
// starts afterwards still reach the console, opened afresh.
func TestConsoleAfterVhangup(t *testing.T) {
	setup(t)
	rc := "#!/bin/sh\necho \"rc $1\" >>/markers/log\n[ \"$1\" = 0 ] && echo rc0-on-the-console\nexit 0\n"
	g := boot(t, newRoot(t, map[string]string{"/etc/init.d/rc": rc}), nil)
	g.booted()
	pts, err := os.OpenFile(ptsName(t, g.ptm), os.O_RDWR|unix.O_NOCTTY, 0)
	must(t, err)
	hup := exec.Command("/proc/self/exe")
	hup.Env = []string{vhangupEnv + "=1"}
	hup.Stdin, hup.Stdout, hup.Stderr = pts, pts, pts
	hup.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err = hup.Run()
	pts.Close()
	if err != nil {
		t.Fatalf("vhangup: %v", err)
	}
	g.signal(syscall.SIGPWR)
	endsWith(t, g, guestexit.PowerOff)
	con := g.console()
	if !announced(con, "power off (SIGPWR)") || !strings.Contains(con, "rc0-on-the-console") {
		t.Errorf("after a vhangup of the console, PID 1's line or rc 0's did not reach it:\n%s", con)
	}
}

// ptsName is the path of the slave of pty master m.
func ptsName(t *testing.T, m *os.File) string {
	t.Helper()
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	must(t, err)
	return fmt.Sprintf("/dev/pts/%d", n)
}
