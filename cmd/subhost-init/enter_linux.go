package main

import (
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/guestexec"
)

// serveEnter runs the commands that `subhost enter` asks for as children
// of PID 1, so that they are guest processes from fork on (package
// guestexec says why). It listens before PID 1 starts anything, so that
// no guest process can take the socket's name first.
func (p *pid1) serveEnter() {
	l, err := guestexec.Listen()
	if err != nil {
		p.say("%v; subhost enter will not work", err)
		return
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				p.say("%v; subhost enter will not work", err)
				return
			}
			go func() {
				if err := c.ReadRequest(); err != nil {
					c.Close()
					return
				}
				p.runEntered(c)
			}()
		}
	}()
}

// runEntered starts c's command, relays the client's signals to its
// process group, and reports how it ended.
func (p *pid1) runEntered(c *guestexec.Conn) {
	defer c.Close()
	if p.decided.Load() {
		closeFiles(c)
		_ = c.Send(guestexec.Event{Error: "the guest is shutting down"})
		return
	}
	pid, done, err := p.spawn(c.Request, c)
	closeFiles(c) // the command holds them now
	if err != nil {
		_ = c.Send(guestexec.Event{Error: err.Error()})
		return
	}
	if c.Send(guestexec.Event{Started: true, PID: pid}) != nil {
		_ = unix.Kill(-pid, unix.SIGHUP)
	}
	exited := make(chan struct{})
	go func() {
		_ = c.Signals(func(s syscall.Signal) { _ = unix.Kill(-pid, s) })
		// The client hung up: as a terminal going away, unless the
		// command is gone already (its group's ID may be reused then).
		select {
		case <-exited:
		default:
			_ = unix.Kill(-pid, unix.SIGHUP)
			_ = unix.Kill(-pid, unix.SIGCONT)
		}
	}()
	ws := <-done
	close(exited)
	ev := guestexec.Event{Exited: true, Status: ws.ExitStatus()}
	if ws.Signaled() {
		ev.Signal = int(ws.Signal())
	}
	_ = c.Send(ev)
}

func closeFiles(c *guestexec.Conn) {
	for _, f := range c.Files {
		f.Close()
	}
}

// spawn starts the command in a session of its own (with the terminal as
// its controlling terminal when it came with one) in /, and tracks it
// before reap can see it end.
func (p *pid1) spawn(req guestexec.Request, c *guestexec.Conn) (int, chan unix.WaitStatus, error) {
	path, err := guestexec.LookPath(req.Argv[0], req.Env)
	if err != nil {
		return 0, nil, err
	}
	var fds []uintptr
	for _, f := range c.Files {
		fds = append(fds, f.Fd())
	}
	if req.TTY {
		fds = []uintptr{fds[0], fds[0], fds[0]}
	}
	p.procs.Lock()
	defer p.procs.Unlock()
	pid, err := syscall.ForkExec(path, req.Argv, &syscall.ProcAttr{
		Dir:   "/",
		Env:   req.Env,
		Files: fds,
		Sys:   &syscall.SysProcAttr{Setsid: true, Setctty: req.TTY, Ctty: 0},
	})
	if err != nil {
		return 0, nil, err
	}
	done := make(chan unix.WaitStatus, 1)
	p.entered[pid] = done
	return pid, done, nil
}
