package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/guestexit"
)

// shellGuest boots a guest in mode shell and waits for the shell to
// answer on the console.
func shellGuest(t *testing.T, args ...string) *guest {
	t.Helper()
	g := boot(t, newRoot(t, nil), nil, append([]string{"--mode", "shell"}, args...)...)
	// Type only once the shell is there: line editing starts with
	// a flush of pending input.
	g.waitConsole(" # ")
	g.type_("echo ready-$((40+2))\n")
	g.waitConsole("\nready-42\n")
	return g
}

// type_ writes to the console as a user at its keyboard.
func (g *guest) type_(s string) {
	g.t.Helper()
	if _, err := g.ptm.Write([]byte(s)); err != nil {
		g.t.Fatalf("write to the console: %v", err)
	}
}

func TestShellSession(t *testing.T) {
	setup(t)
	// The busybox guest has no /bin/bash. Its ash runs "sleep" in a
	// forked shell that keeps ignoring SIGTERM, so the grace period is
	// cut short.
	g := shellGuest(t, "--shutdown-timeout", "1s")
	if !strings.Contains(g.console(), "subhost-init: no /bin/bash, trying /bin/sh\n") {
		t.Errorf("no note about the missing /bin/bash")
	}
	// The shell is a session leader with the console as controlling
	// terminal and its process group in the foreground; PID 1 has no
	// controlling terminal.
	var sh *proc
	for _, p := range g.procs() {
		if p.pid == g.pid {
			if p.ttyNr != 0 {
				t.Errorf("PID 1 still has a controlling terminal (tty_nr %#x)", p.ttyNr)
			}
			continue
		}
		if p.comm == "sh" {
			sh = &p
		}
	}
	if sh == nil {
		t.Fatal("no shell among the guest's processes")
	}
	if sh.session != sh.pid || sh.ttyNr == 0 || sh.tpgid != sh.pgrp {
		t.Errorf("shell %+v: want its own session, a controlling tty and the foreground", *sh)
	}
	// A process left behind must not survive the end of the session.
	g.type_("echo home=$HOME term=$TERM container=$container; pwd; sleep 1000 & exit\n")
	if got := g.wait(10 * time.Second); got != guestexit.PowerOff || !g.ws.Exited() || g.ws.ExitStatus() != 0 {
		t.Errorf("guest ended with %s, want exit status 0", guestexit.Describe(g.ws))
	}
	con := g.console()
	for _, want := range []string{"\nhome=/root term=vt100 container=subhost\n", "\n/root\n", "subhost-init: sending SIGTERM to all processes\n"} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}
}

func TestShellEndsOnShutdownRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(g *guest)
	}{
		{"SIGPWR", func(g *guest) { g.signal(syscall.SIGPWR) }},
		{"poweroff inside", func(g *guest) { g.type_("poweroff\n") }},
		{"initctl", func(g *guest) { must(g.t, g.initctl([]byte("x\n"))) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setup(t)
			g := shellGuest(t, "--shell", "/bin/sh")
			if strings.Contains(g.console(), "trying /bin/sh") {
				t.Errorf("--shell /bin/sh fell back")
			}
			t0 := time.Now()
			tc.do(g)
			if got := g.wait(10 * time.Second); got != guestexit.PowerOff || !g.ws.Exited() {
				t.Errorf("guest ended with %s, want exit status 0", guestexit.Describe(g.ws))
			}
			// the interactive shell ignores SIGTERM: a hangup ends it
			// at once, without waiting for the grace period
			if d := time.Since(t0); d > 3*time.Second {
				t.Errorf("the session took %v to end", d)
			}
			if !strings.Contains(g.console(), "ending the session") {
				t.Errorf("console does not say why the session ended")
			}
		})
	}
}

func TestShellMissing(t *testing.T) {
	setup(t)
	root := newRoot(t, nil)
	must(t, os.Remove(filepath.Join(root, "bin/sh")))
	g := boot(t, root, nil, "--mode", "shell", "--shell", "/bin/zsh")
	if got := g.wait(10 * time.Second); got != guestexit.Crashed {
		t.Errorf("guest ended with %s, want a failure", guestexit.Describe(g.ws))
	}
	for _, want := range []string{"no /bin/zsh, trying /bin/sh\n", "no /bin/sh; no shell to run\n"} {
		if !strings.Contains(g.console(), want) {
			t.Errorf("console lacks %q", want)
		}
	}
}
