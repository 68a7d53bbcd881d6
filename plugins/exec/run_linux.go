package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk"
)

// logKeyScript names the script in log lines, beside the SDK's keys.
const logKeyScript = "script"

// pipeGrace is how long a script that has exited may leave its standard
// output and error open (a background process it started still holds
// them) before they are closed and the call goes on without them.
const pipeGrace = time.Second

// exitError is a script that ran and did not exit 0.
type exitError struct {
	code   int    // the exit status; -1 when a signal ended it
	status string // "exit status 3", "signal: killed"
	last   string // its last line of standard error
}

func (e *exitError) Error() string {
	if e.last == "" {
		return e.status + ", with nothing on standard error"
	}
	return e.last + " (" + e.status + ")"
}

// runScript runs script with verb as $1, the request on its standard
// input and the environment of scriptEnv, in a process group of its own
// (led by a guard), and returns its standard output. Every line of its
// standard error is logged to log. A script that did not exit 0 is an
// *exitError; one still running shortly before ctx's deadline, or when
// ctx is cancelled, is killed with its process group.
func runScript(ctx context.Context, log hclog.Logger, script, verb string, req *sdk.Request) ([]byte, error) {
	in, err := stdinFor(verb, req)
	if err != nil {
		return nil, sdk.Internalf("script %s %s: encode its request: %w", script, verb, err)
	}
	stderr := &stderrLog{log: log.With(logKeyScript, script)}
	g, err := startGuard()
	if err != nil {
		return nil, err
	}
	defer g.stop()
	var stdout cappedBuffer
	cmd := &exec.Cmd{
		Path:   script,
		Args:   []string{script, verb},
		Env:    scriptEnv(req),
		Dir:    "/",
		Stdin:  bytes.NewReader(in),
		Stdout: &stdout,
		Stderr: stderr,
		// The guard's group (see guard_linux.go); and SIGKILL if this
		// plugin dies.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pgid: g.pgid(), Pdeathsig: syscall.SIGKILL},
		WaitDelay:   pipeGrace,
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, startError(script, verb, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var stop <-chan time.Time
	stopAt, grace := stopTime(ctx)
	if !stopAt.IsZero() {
		t := time.NewTimer(time.Until(stopAt))
		defer t.Stop()
		stop = t.C
	}
	var werr, killed error
	select {
	case werr = <-waited:
	case <-ctx.Done():
		// The caller has given up (interrupted) and is about to kill this
		// plugin: no time for a grace period.
		g.kill(unix.SIGKILL)
		werr = <-waited
		killed = sdk.Internalf("script %s %s: the call was cancelled (%v): killed it and its process group", script, verb, context.Cause(ctx))
	case <-stop:
		g.kill(unix.SIGTERM)
		select {
		case werr = <-waited:
		case <-time.After(grace):
			g.kill(unix.SIGKILL)
			werr = <-waited
		}
		g.kill(unix.SIGKILL) // what is left of its group, too
		killed = sdk.Internalf("script %s %s: still running after %s, at the stage's timeout: killed it and its process group",
			script, verb, time.Since(start).Round(100*time.Millisecond))
	}
	stderr.Flush()
	if killed != nil {
		return nil, killed
	}
	var exit *exec.ExitError
	switch {
	case errors.As(werr, &exit):
		return nil, &exitError{code: exit.ExitCode(), status: exit.ProcessState.String(), last: stderr.Last()}
	case errors.Is(werr, exec.ErrWaitDelay):
		log.Warn("a process the script started still holds its standard output or error; redirect a background process's output", logKeyScript, script)
	case werr != nil:
		return nil, sdk.Internalf("script %s %s: %w", script, verb, werr)
	}
	if stdout.over {
		return nil, sdk.Internalf("script %s %s: it printed more than %d bytes on standard output: %s", script, verb, maxStdout, outputShape)
	}
	return stdout.buf.Bytes(), nil
}

// startError explains why a script could not be started: a missing #!
// line is the usual cause.
func startError(script, verb string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return sdk.Invalidf("script %s %s: cannot run it: %w", script, verb, err)
	}
	hint := ""
	if errno == syscall.ENOEXEC {
		hint = " (does it start with a #! line?)"
	}
	return sdk.Invalidf("script %s %s: cannot run it: %w%s", script, verb, errno, hint)
}

// stopTime is when a script still running is stopped, and the grace
// between SIGTERM and SIGKILL: shortly before the call's deadline, so that
// the call still returns an error that names the script before the runner
// gives up on this plugin and kills it. Zero without a deadline.
func stopTime(ctx context.Context) (time.Time, time.Duration) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return time.Time{}, 0
	}
	reserve := min(max(time.Until(deadline)/10, 200*time.Millisecond), 5*time.Second)
	return deadline.Add(-reserve), reserve / 2
}
