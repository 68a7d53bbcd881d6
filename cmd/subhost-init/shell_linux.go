package main

import (
	"time"

	"golang.org/x/sys/unix"
)

// shellMode runs an interactive shell as the guest's session on the
// console. When it ends, or on any shutdown request, every guest process
// is killed and PID 1 exits 0: the subhost is hibernating (its mounts and
// network are the runner's to keep).
func (p *pid1) shellMode(shell string) int {
	// The FIFO too: a guest's shutdown or telinit ends the session as a
	// signal does, instead of failing for want of /run/initctl.
	p.openInitctl()
	p.serveEnter()
	sh := shell
	if ok, why := executable(sh); !ok {
		if sh == "/bin/sh" {
			p.say("%s; no shell to run", why)
			return 1
		}
		p.say("%s, trying /bin/sh", why)
		sh = "/bin/sh"
		if ok, why := executable(sh); !ok {
			p.say("%s; no shell to run", why)
			return 1
		}
	}
	// The shell's own session with the console as controlling terminal
	// (TIOCSCTTY): it is then also the foreground process group, so job
	// control and ^C work as on a real console.
	pid, err := p.start([]string{sh}, environ("HOME=/root"), true)
	if err != nil {
		p.say("%s: %v", sh, err)
		return 1
	}
	var req request
	if _, res := p.wait(pid, time.Time{}, true, &req); res == gotRequest {
		p.say("%s: ending the session", req)
		// An interactive shell ignores SIGTERM; a hangup ends it, as
		// when a terminal goes away.
		_ = unix.Kill(-pid, unix.SIGHUP)
		_ = unix.Kill(-pid, unix.SIGCONT)
	}
	p.killAll()
	return 0
}
