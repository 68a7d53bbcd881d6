package main

import (
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/initctl"
)

const initctlPath = "/run/initctl"

// A boot step: a script and the runlevel it brings the guest to, for
// the RUNLEVEL/PREVLEVEL variables that sysvinit gives its scripts
// (Debian's rc reads them).
type step struct {
	argv     []string
	runlevel string
}

// sysvMode boots the guest's sysvinit scripts and waits for shutdown.
func (p *pid1) sysvMode() int {
	p.openInitctl()
	p.serveEnter()
	prev := "N"
	var req request
	stopped := false
	for _, s := range []step{
		{[]string{"/etc/init.d/rcS"}, "S"},
		{[]string{"/etc/init.d/rc", "2"}, "2"},
	} {
		if ok, why := executable(s.argv[0]); !ok {
			p.say("%s, skipping %s", why, describe(s))
			continue
		}
		p.say("running %s", strings.Join(s.argv, " "))
		pid, err := p.start(s.argv, environ("RUNLEVEL="+s.runlevel, "PREVLEVEL="+prev, "CONSOLE=/dev/console"), false)
		if err != nil {
			p.say("%s: %v", s.argv[0], err)
			continue
		}
		if s.runlevel != "S" {
			prev = s.runlevel // sysvinit's runlevel says "N 2" after boot
		}
		ws, res := p.wait(pid, time.Time{}, true, &req)
		if res == gotRequest {
			// Shutdown during boot: stop the boot script (and what
			// runs in its session) before the shutdown scripts start,
			// within the shutdown's time.
			p.beginShutdown()
			p.say("%s; stopping %s", req, strings.Join(s.argv, " "))
			_ = unix.Kill(-pid, unix.SIGTERM)
			if _, res := p.wait(pid, p.before(p.grace, 2*p.grace), false, nil); res == timedOut {
				_ = unix.Kill(-pid, unix.SIGKILL)
				p.forget(pid)
			}
			stopped = true
			break
		}
		if ws != 0 {
			p.say("%s ended with %s", strings.Join(s.argv, " "), status(ws))
		}
	}
	if !stopped {
		p.wait(0, time.Time{}, true, &req)
		p.beginShutdown()
		p.say("%s", req)
	}
	return p.shutdown(req, prev)
}

// shutdown runs rc 0 (power off) or rc 6 (reboot) as sysvinit's inittab
// does, then ends every process and the guest, all within the shutdown
// timeout from the request (beginShutdown): the host, which sent the
// request, kills the guest when that time is up, and whatever PID 1 had
// not done by then (the SIGTERM to all, its grace, the sync) is lost.
func (p *pid1) shutdown(req request, prev string) int {
	rl := "0"
	if req.reboot {
		rl = "6"
	}
	s := step{[]string{"/etc/init.d/rc", rl}, rl}
	lockSysctls()
	if ok, why := executable(s.argv[0]); !ok {
		p.say("%s, skipping %s", why, describe(s))
	} else {
		p.say("running %s", strings.Join(s.argv, " "))
		pid, err := p.start(s.argv, environ("RUNLEVEL="+rl, "PREVLEVEL="+prev, "CONSOLE=/dev/console"), false)
		if err != nil {
			p.say("%s: %v", s.argv[0], err)
		} else if _, res := p.wait(pid, p.before(p.timeout, 2*p.grace), false, nil); res == timedOut {
			p.say("%s did not finish in time (the shutdown may take %v in all); going on", strings.Join(s.argv, " "), p.timeout)
			p.forget(pid) // killed with everything else just below
		}
	}
	p.killAll()
	syncRoot()
	return p.halt(req.reboot)
}

// syncRoot writes the guest root's file system out, as a machine's init
// syncs before it powers off. Not sync(2), which is not namespaced: it
// would flush every file system of the host, and wait in the kernel, past
// any SIGKILL, for one whose server is gone (a hard NFS mount). The other
// file systems a guest has are the host's mounts (its MOUNTS disks), or
// its own in memory; the host's unmount at the guest's end writes out
// what the root and the disks still hold anyway.
func syncRoot() {
	if fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		_ = unix.Syncfs(fd)
		unix.Close(fd)
	}
}

// openInitctl makes the /run/initctl FIFO and reads requests from it
// for as long as PID 1 lives. It is opened read-write so that it never
// sees end-of-file when a writer closes. /run is the guest's own tmpfs,
// so whatever the guest put at the path is removed first.
func (p *pid1) openInitctl() {
	if err := os.RemoveAll(initctlPath); err != nil {
		p.say("%v; no %s", err, initctlPath)
		return
	}
	if err := unix.Mkfifo(initctlPath, 0o600); err != nil {
		p.say("make %s: %v", initctlPath, err)
		return
	}
	f, err := os.OpenFile(initctlPath, os.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		p.say("open %s: %v", initctlPath, err)
		return
	}
	go p.readInitctl(f)
}

func (p *pid1) readInitctl(f *os.File) {
	// Whole requests only: a FIFO write of at most PIPE_BUF bytes is
	// atomic, and a read of a multiple of the request size never splits
	// a run of valid requests.
	buf := make([]byte, 10*initctl.Size)
	for {
		n, err := f.Read(buf)
		if err != nil {
			p.say("read %s: %v", initctlPath, err)
			return
		}
		// After the first shutdown request, keep draining so that
		// writers never block, and ignore what they write.
		for rest := buf[:n]; len(rest) > 0 && !p.decided.Load(); {
			var act initctl.Action
			var why string
			act, why, rest = initctl.Next(rest)
			switch act {
			case initctl.Ignore:
				p.say("ignoring %s request: %s", initctlPath, why)
			case initctl.PowerOff:
				p.request(request{why: initctlPath + ": " + why})
			case initctl.Reboot:
				p.request(request{reboot: true, why: initctlPath + ": " + why})
			}
		}
	}
}

// describe names a step for a "skipping" note: "runlevel 2".
func describe(s step) string {
	if s.runlevel == "S" {
		return "boot scripts"
	}
	return "runlevel " + s.runlevel
}

func status(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return signalName(ws.Signal())
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}
