package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/guestenv"
	"github.com/subhost/subhost/internal/guestexit"
)

// sigRTMIN is SIGRTMIN as glibc (systemd, busybox) numbers it: the
// kernel's 32 plus the two that glibc keeps for itself. systemd's
// SIGRTMIN+3/+4/+5 (halt, poweroff, reboot) are signals 37, 38 and 39.
const sigRTMIN = 34

var (
	powerOffSignals = []os.Signal{unix.SIGPWR, unix.SIGUSR1, unix.SIGUSR2, syscall.Signal(sigRTMIN + 3), syscall.Signal(sigRTMIN + 4)}
	rebootSignals   = []os.Signal{unix.SIGINT, unix.SIGTERM, syscall.Signal(sigRTMIN + 5)}
	// The signals whose default action the Go runtime carries out
	// itself (exit or crash) when nobody listens. The kernel never
	// delivers a default-action signal to a namespace's PID 1, and
	// neither may we die of one: they are caught and dropped.
	// signal.Ignore would not do: SIG_IGN survives exec, so every script
	// would start with SIGHUP and SIGPIPE ignored.
	droppedSignals = []os.Signal{unix.SIGHUP, unix.SIGQUIT, unix.SIGILL, unix.SIGTRAP, unix.SIGABRT,
		unix.SIGBUS, unix.SIGFPE, unix.SIGSEGV, unix.SIGPIPE, unix.SIGALRM, unix.SIGSTKFLT,
		unix.SIGXCPU, unix.SIGXFSZ, unix.SIGVTALRM, unix.SIGIO, unix.SIGSYS}
)

// request is a shutdown request: power off unless reboot.
type request struct {
	reboot bool
	why    string
}

func (r request) String() string {
	if r.reboot {
		return "reboot (" + r.why + ")"
	}
	return "power off (" + r.why + ")"
}

// pid1 is the process table and event loop of the guest's PID 1. Only
// the main goroutine starts and reaps processes, so a child can never be
// reaped before it is tracked.
type pid1 struct {
	timeout time.Duration // for the whole shutdown: rc 0 / rc 6, then ending every process
	grace   time.Duration // between SIGTERM and SIGKILL to all, and after SIGKILL
	// deadline is when the shutdown must be done (beginShutdown).
	deadline time.Time
	chld     chan os.Signal
	requests chan request // the first shutdown request, and only that one
	decided  atomic.Bool
	tracked  map[int]bool
	exited   map[int]unix.WaitStatus
	// out serialises say's lines; say is PID 1's own way to the
	// console (-1 until first used, see say).
	out  sync.Mutex
	said int
	// procs guards entered, which other goroutines fill (enter_linux.go):
	// a command they start is in it before reap can collect it.
	procs   sync.Mutex
	entered map[int]chan unix.WaitStatus
}

func newPID1(timeout time.Duration) *pid1 {
	p := &pid1{
		timeout:  timeout,
		grace:    min(5*time.Second, timeout/6),
		chld:     make(chan os.Signal, 1),
		requests: make(chan request, 1),
		tracked:  map[int]bool{},
		exited:   map[int]unix.WaitStatus{},
		entered:  map[int]chan unix.WaitStatus{},
		said:     -1,
	}
	unix.Umask(0o022) // as sysvinit: scripts inherit it
	_ = os.Chdir("/")
	signal.Notify(make(chan os.Signal, 1), droppedSignals...)
	ignoreUnhandledSignals()
	signal.Notify(p.chld, unix.SIGCHLD)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, append(append([]os.Signal{}, powerOffSignals...), rebootSignals...)...)
	go func() {
		for s := range sigs {
			reboot := false
			for _, r := range rebootSignals {
				reboot = reboot || s == r
			}
			p.request(request{reboot: reboot, why: signalName(s.(syscall.Signal))})
		}
	}()
	// Give up the console as controlling terminal. Otherwise a ^C typed
	// on the console would send SIGINT to PID 1's process group, which
	// means reboot. Scripts run in sessions of their own, as sysvinit
	// runs them; the shell of mode shell takes the console as its
	// controlling terminal. (The SIGHUP the kernel sends our process
	// group for this is dropped above.)
	_, _, _ = unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCNOTTY, 0)
	return p
}

// beginShutdown starts the shutdown's clock: it must be done within the
// timeout from now, less a margin for the sync and reboot(2) (the host,
// whose request started it, counts the same timeout from a moment
// before).
func (p *pid1) beginShutdown() {
	if p.deadline.IsZero() {
		p.deadline = time.Now().Add(p.timeout - min(time.Second, p.timeout/10))
	}
}

// before is when a step of the shutdown must end: d from now, but no
// later than the shutdown's deadline less reserve (the time kept for the
// steps after it), and no sooner than a moment from now.
func (p *pid1) before(d, reserve time.Duration) time.Time {
	p.beginShutdown()
	end := time.Now().Add(d)
	if limit := p.deadline.Add(-reserve); limit.Before(end) {
		end = limit
	}
	if soon := time.Now().Add(100 * time.Millisecond); end.Before(soon) {
		end = soon
	}
	return end
}

// request records a shutdown request; the first one wins.
func (p *pid1) request(r request) {
	if p.decided.CompareAndSwap(false, true) {
		p.requests <- r
	}
}

// say prints one line on the console, never waiting long for it: a
// console whose output is stopped (a viewer's ^S, a guest's tcflow) or
// full would otherwise stop PID 1 itself (no reaping, no shutdown), so
// the line is written on a descriptor of PID 1's own that does not
// block, and is lost when the console cannot take it within sayPatience.
// That descriptor is the console opened afresh, as one a vhangup of the
// console has hung up is opened again.
func (p *pid1) say(format string, args ...any) {
	p.out.Lock()
	defer p.out.Unlock()
	line := []byte(fmt.Sprintf("subhost-init: "+format+"\n", args...))
	reopened := false
	for deadline := time.Now().Add(sayPatience); ; {
		if p.said < 0 {
			fd, err := openConsole(unix.O_WRONLY | unix.O_NONBLOCK)
			if err != nil {
				return
			}
			p.said = fd
		}
		_, err := unix.Write(p.said, line)
		switch {
		case err == unix.EAGAIN && time.Now().Before(deadline):
			// Also what a write gets while another process is writing
			// to the tty (its write lock is taken): the shell printing
			// its prompt as the request comes in.
			time.Sleep(time.Millisecond)
		case (err == unix.EIO || err == unix.EBADF) && !reopened:
			// Hung up: open the console again.
			unix.Close(p.said)
			p.said, reopened = -1, true
		default:
			return // written, or lost
		}
	}
}

// sayPatience is how long say tries a console that takes nothing: long
// enough for another writer's line, short enough that a stopped console
// does not hold up a shutdown.
const sayPatience = 20 * time.Millisecond

// openConsole opens the console afresh, as sysvinit opens it for each
// process it starts: what PID 1's standard output is (the console pty the
// launcher gave it, or /dev/null), through /proc/self/fd/1, which names
// that file even after a vhangup of the console has hung up the open one.
func openConsole(flags int) (int, error) {
	return unix.Open("/proc/self/fd/1", flags|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
}

// start runs argv in a session of its own (as sysvinit does: a ^C on
// the console or the end of a script's session never reaches PID 1) with
// the console as stdin, stdout and stderr.
func (p *pid1) start(argv []string, env []string, ctty bool) (int, error) {
	dir := "/"
	if ctty {
		if fi, err := os.Stat("/root"); err == nil && fi.IsDir() {
			dir = "/root"
		}
	}
	// The console opened afresh for it, as sysvinit does: a vhangup of
	// the console (a getty's) hangs up every open file of it, PID 1's
	// own standard streams too, and rc 0 must still have a console.
	files := []uintptr{0, 1, 2}
	if con, err := openConsole(unix.O_RDWR); err == nil {
		defer unix.Close(con)
		files = []uintptr{uintptr(con), uintptr(con), uintptr(con)}
	}
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setsid: true, Setctty: ctty, Ctty: 0},
	})
	if err != nil {
		return 0, err
	}
	p.tracked[pid] = true
	return pid, nil
}

// reap collects every child that has ended: the ones we started and
// every orphan the kernel handed to PID 1.
func (p *pid1) reap() {
	p.procs.Lock()
	defer p.procs.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if p.tracked[pid] {
			delete(p.tracked, pid)
			p.exited[pid] = ws
		}
		if ch, ok := p.entered[pid]; ok {
			delete(p.entered, pid)
			ch <- ws
		}
	}
}

// forget stops tracking pid (a script we gave up waiting for).
func (p *pid1) forget(pid int) {
	delete(p.tracked, pid)
	delete(p.exited, pid)
}

type waitResult int

const (
	childExited waitResult = iota
	gotRequest
	timedOut
)

// wait reaps until pid has exited (pid 0: never), a shutdown request
// arrives (when watch is set; it is then in *req), or the deadline (zero:
// none) passes.
func (p *pid1) wait(pid int, deadline time.Time, watch bool, req *request) (unix.WaitStatus, waitResult) {
	var timer <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timer = t.C
	}
	requests := p.requests
	if !watch {
		requests = nil
	}
	for {
		p.reap()
		if ws, ok := p.exited[pid]; ok {
			delete(p.exited, pid)
			return ws, childExited
		}
		select {
		case <-p.chld:
		case r := <-requests:
			*req = r
			return 0, gotRequest
		case <-timer:
			return 0, timedOut
		}
	}
}

// anyLeft reports whether any process but PID 1 is left in the
// namespace (zombies count until reaped, so reap first).
func (p *pid1) anyLeft() bool {
	p.reap()
	return unix.Kill(-1, 0) != unix.ESRCH
}

// waitGone reaps until no other process is left, or d has passed.
func (p *pid1) waitGone(d time.Duration) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for p.anyLeft() {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-p.chld:
		case <-tick.C:
		}
	}
	return true
}

// killAll ends every other process of the guest: SIGTERM, a grace
// period (shorter when all are gone sooner), then SIGKILL.
func (p *pid1) killAll() {
	if !p.anyLeft() {
		return
	}
	p.say("sending SIGTERM to all processes")
	_ = unix.Kill(-1, unix.SIGTERM)
	_ = unix.Kill(-1, unix.SIGCONT) // a stopped process must wake up to die
	if p.waitGone(time.Until(p.before(p.grace, p.grace))) {
		return
	}
	p.say("sending SIGKILL to all processes")
	_ = unix.Kill(-1, unix.SIGKILL)
	// Processes in uninterruptible sleep may take a moment; the kernel
	// kills whatever is left when PID 1 ends anyway.
	if !p.waitGone(time.Until(p.before(p.grace, 0))) {
		p.say("some processes did not die; going on")
	}
}

// halt ends the guest: reboot(2) makes the kernel kill PID 1 with
// SIGINT (power off) or SIGHUP (reboot), which the runner reads from the
// wait status; without CAP_SYS_BOOT the exit status says the same.
func (p *pid1) halt(reboot bool) int {
	cmd, code := unix.LINUX_REBOOT_CMD_POWER_OFF, guestexit.ExitPowerOff
	if reboot {
		cmd, code = unix.LINUX_REBOOT_CMD_RESTART, guestexit.ExitReboot
	}
	// Never reboot(2) from the host's initial PID namespace: there it
	// would power off the machine.
	if ok, err := inChildPIDNamespace(); !ok {
		p.say("not in a PID namespace of its own (%v); exiting with status %d", err, code)
		return code
	}
	err := unix.Reboot(cmd)
	p.say("reboot(2): %v; exiting with status %d", err, code)
	return code
}

// The inode number of the initial PID namespace (PROC_PID_INIT_INO).
const initPIDNamespace = "pid:[4026531836]"

func inChildPIDNamespace() (bool, error) {
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return false, err
	}
	if ns == initPIDNamespace {
		return false, errors.New("initial PID namespace")
	}
	return true, nil
}

// environ is PID 1's environment with vars set (NAME=value), as the
// scripts get it.
func environ(vars ...string) []string {
	env := os.Environ()
	if os.Getenv("PATH") == "" {
		vars = append([]string{"PATH=" + guestenv.Path}, vars...)
	}
	for _, v := range vars {
		name := v[:strings.IndexByte(v, '=')+1]
		for i := 0; i < len(env); i++ {
			if strings.HasPrefix(env[i], name) {
				env = append(env[:i], env[i+1:]...)
				i--
			}
		}
		env = append(env, v)
	}
	return env
}

// executable reports whether path (judged inside the guest: symlinks
// resolve in the guest's root) is a file we can run, and if not, why.
func executable(path string) (bool, string) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, "no " + path
	case err != nil:
		return false, err.Error()
	case !fi.Mode().IsRegular():
		return false, path + " is not a regular file"
	case fi.Mode().Perm()&0o111 == 0:
		return false, path + " is not executable"
	}
	return true, ""
}

func signalName(s syscall.Signal) string {
	if s > sigRTMIN && s <= sigRTMIN+15 {
		return fmt.Sprintf("SIGRTMIN+%d", int(s)-sigRTMIN)
	}
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}

// ignoreUnhandledSignals sets SIG_IGN on signals 32 and 34, the two that
// the Go runtime leaves at SIG_DFL (libc's internal signals; Go cannot
// be asked to catch them). The kernel drops a default-action signal to
// a namespace's PID 1 only while the receiving thread does not block
// it; a Go thread blocks every signal while it runs a signal handler,
// and then signal 34 is queued, another thread takes it, and PID 1 dies
// of it. Ignored signals stay ignored in the scripts PID 1 starts, but
// for these two nobody relies on the default: glibc and musl install
// their own handlers for 32 and 33, and programs that use SIGRTMIN
// install theirs.
func ignoreUnhandledSignals() {
	// struct kernel_sigaction of the generic Linux ABI (amd64, arm64,
	// riscv64, 386, arm)
	type sigaction struct {
		handler, flags, restorer uintptr
		mask                     uint64
	}
	const sigIGN = 1
	for _, s := range []uintptr{32, 34} {
		sa := sigaction{handler: sigIGN}
		_, _, _ = unix.RawSyscall6(unix.SYS_RT_SIGACTION, s, uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0)
	}
}
