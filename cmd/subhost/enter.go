package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/console"
	"github.com/subhost/subhost/internal/guestenv"
	"github.com/subhost/subhost/internal/guestexec"
	"github.com/subhost/subhost/internal/proc"
	"github.com/subhost/subhost/sdk"
)

func newEnterCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "enter NAME [-- CMD ARGS...]",
		Short: "Run a command (default: a shell) inside a running subhost",
		Long: `Run a command inside the guest, as a child of its PID 1: in all of the
guest's namespaces, its root and its cgroups, confined as PID 1 is, with the
guest's environment basics (container=subhost, PATH, TERM, HOME=/root).
Without a command it starts the guest's shell (/bin/bash, else /bin/sh).
When standard input is a terminal the command gets a new pty of the guest's
own, relayed to it (raw mode, window size); otherwise it reads and writes
pipes. No other descriptor of the caller reaches the guest. The command's
exit status is subhost's (128+N when it died of signal N).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageError{fmt.Errorf("want NAME [-- CMD ARGS...]")}
			}
			return nil
		},
		ValidArgsFunction: completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sdk.ValidName(args[0]); err != nil {
				return err
			}
			pid, start, err := guestPID(args[0])
			if err != nil {
				return err
			}
			command := args[1:]
			if len(command) == 0 {
				command = []string{"/bin/sh", "-c", "if [ -x /bin/bash ]; then exec /bin/bash -l; fi; exec /bin/sh -l"}
			}
			req := guestexec.Request{
				Argv: command,
				Env:  guestenv.Base(os.Getenv("TERM")),
				TTY:  isTerminal(os.Stdin),
			}
			// The command is the guest's PID 1's child, so it is in the
			// guest's cgroups and confined as PID 1 is (its dropped
			// capabilities, its seccomp guard) without this process
			// joining anything: see package guestexec for why enter no
			// longer joins the guest's namespaces itself.
			code, err := enter(pid, start, req)
			if err != nil {
				return err
			}
			if code != 0 {
				return silentError{code}
			}
			return nil
		},
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// listenGrace is how long after its start a guest's PID 1 is waited for
// to listen for enter: it does within milliseconds, seconds at most on a
// host busy booting many guests at once.
const listenGrace = 10 * time.Second

// enter runs req in the guest whose PID 1 is pid (started at start) and
// relays its terminal or pipes; it returns the command's exit code.
func enter(pid int, start uint64, req guestexec.Request) (int, error) {
	p, err := proc.Open(pid, start)
	if err != nil {
		return 0, fmt.Errorf("the guest (pid %d) is gone", pid)
	}
	defer p.Close()
	root, err := guestexec.GuestRoot(pid)
	if err != nil {
		return 0, err
	}
	// A guest younger than listenGrace may have a PID 1 that does not
	// listen yet; an older one that does not listen never will.
	c, err := guestexec.DialUntil(p.FD(), root, time.Now().Add(listenGrace-proc.Age(start)))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if req.TTY {
		return enterTerminal(p, c, req)
	}
	return enterPipes(c, req)
}

// enterTerminal gives the command a new pty of the guest's own devpts,
// never the caller's terminal (a guest program could push keystrokes
// into the caller's shell with TIOCSTI), and relays it.
func enterTerminal(p *proc.Process, c *guestexec.Client, req guestexec.Request) (int, error) {
	root, err := os.OpenFile(fmt.Sprintf("/proc/%d/root", p.PID), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("the guest's root: %w", err)
	}
	defer root.Close()
	// /proc/PID named the guest's PID 1 if it is still alive now.
	if p.Exited() {
		return 0, fmt.Errorf("the guest (pid %d) is gone", p.PID)
	}
	master, slave, err := guestexec.OpenGuestPTY(root)
	if err != nil {
		return 0, err
	}
	defer master.Close()
	if rows, cols, err := winsize(os.Stdin); err == nil {
		_ = unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}
	_, err = c.Start(req, []*os.File{slave})
	slave.Close() // the command holds it now; its last close ends the relay
	if err != nil {
		return 0, err
	}
	stop := forwardSignals(c, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	done := make(chan struct{})
	relayed := make(chan error, 1)
	go func() { relayed <- console.Relay(master, os.Stdin, os.Stdout, done) }()
	ev, err := c.Wait()
	close(done)
	if rerr := <-relayed; err == nil && rerr != nil {
		err = rerr
	}
	return ev.ExitCode(), err
}

func winsize(f *os.File) (uint16, uint16, error) {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0, 0, err
	}
	return ws.Row, ws.Col, nil
}

// enterPipes gives the command three new pipes and copies the caller's
// standard input, output and error through them.
func enterPipes(c *guestexec.Client, req guestexec.Request) (int, error) {
	var ours, theirs [3]*os.File
	for i := range 3 {
		r, w, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		if i == 0 {
			ours[i], theirs[i] = w, r
		} else {
			ours[i], theirs[i] = r, w
		}
		defer ours[i].Close()
	}
	_, err := c.Start(req, theirs[:])
	for _, f := range theirs {
		f.Close()
	}
	if err != nil {
		return 0, err
	}
	stop := forwardSignals(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer stop()
	// Input until its end (then the command reads EOF); a read still
	// blocked when the command ends is abandoned with the process.
	go func() {
		_, _ = io.Copy(ours[0], os.Stdin)
		ours[0].Close()
	}()
	var wg sync.WaitGroup
	for i, to := range []*os.File{os.Stdout, os.Stderr} {
		wg.Add(1)
		go func(from *os.File) {
			defer wg.Done()
			_, _ = io.Copy(to, from)
		}(ours[i+1])
	}
	ev, err := c.Wait()
	// The output until every writer has closed it; a background process
	// that keeps it open gets a moment, not the caller's wait.
	copied := make(chan struct{})
	go func() { wg.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
	}
	return ev.ExitCode(), err
}

// forwardSignals sends the caller's sigs to the command until stop is
// called.
func forwardSignals(c *guestexec.Client, sigs ...os.Signal) (stop func()) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, sigs...)
	quit := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-ch:
				_ = c.Signal(s.(syscall.Signal))
			case <-quit:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(quit) }
}
