package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/autostart"
	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/internal/state"
)

func newAutostartStopCmd() *cobra.Command {
	opts := autostart.StopOptions{}
	cmd := &cobra.Command{
		Use:   "stop [--timeout D] [--total D] [--parallel N]",
		Short: "Stop every running or hibernating subhost, in reverse order, within a bound",
		Long: `Stop every running or hibernating subhost, enrolled or not: those not
enrolled first, then the enrolled ones in descending order (equal orders in
parallel). Each guest gets --timeout to power off (without it, or with an
empty one, its own: its pipeline's shutdown_timeout, 30s unless set, as
plain stop gives it), then it is killed and its stages are brought down.
The whole stop is bounded by --total: once less than 15s of it is left, the
guests not yet stopped are killed at once, and at --total the command
returns, reporting what is still stopping. The systemd unit's
TimeoutStopSec (120s) is above the default total (90s).`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Parallel < 1 {
				return usageError{fmt.Errorf("--parallel %d: want at least 1", opts.Parallel)}
			}
			if opts.Total <= 0 {
				return usageError{fmt.Errorf("--total %s: want a positive duration", opts.Total)}
			}
			up, err := upSubhosts()
			if err != nil {
				return err
			}
			r, err := newStopRunner()
			if err != nil {
				return err
			}
			r.Progress = nil
			out := cmd.OutOrStdout()
			var mu sync.Mutex
			opts.Report = func(res autostart.Result) {
				mu.Lock()
				defer mu.Unlock()
				if res.Err != nil {
					fmt.Fprintf(os.Stderr, "subhost %s: FAILED to stop: %v\n", res.Name, res.Err)
					return
				}
				fmt.Fprintf(out, "subhost %s stopped in %s\n", res.Name, res.Took.Round(time.Millisecond))
			}
			// Not the command's context: a SIGTERM from the service
			// manager must not cut the stop it asked for short; --total
			// bounds it.
			results := autostart.StopAll(context.WithoutCancel(cmd.Context()), up, stopper{r}, opts)
			if n := autostart.Failed(results); n > 0 {
				fmt.Fprintf(os.Stderr, "subhost: %d of %d subhosts failed to stop\n", n, len(results))
				return silentError{exitFailed}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Var(guestTimeout{&opts.Timeout}, "timeout", "how long every guest gets to power off before it is killed (default: each its own, its pipeline's shutdown_timeout)")
	f.DurationVar(&opts.Total, "total", autostart.DefaultStopTotal, "bound on the whole stop")
	f.IntVar(&opts.Parallel, "parallel", runtime.NumCPU(), "how many subhosts of equal order stop at once")
	return cmd
}

// upSubhosts lists every subhost that is up (or failed), with its
// enrolment's order. One whose state cannot be read is listed too: at
// host shutdown it must not keep the others from being stopped, and its
// own stop, which reads the state again, fails with the reason, reported
// with the other results.
func upSubhosts() ([]autostart.Up, error) {
	names, err := state.List(g.StateDir)
	if err != nil {
		return nil, err
	}
	var up []autostart.Up
	for _, n := range names {
		st, lerr := state.Dir{Root: g.StateDir, Name: n}.Load()
		rep, err := reportOf(g.StateDir, n, st, lerr)
		// A failed subhost may still hold mounts and loop devices that
		// must go before the host's filesystems do.
		if err == nil && !isUp(rep.State) && rep.State != state.Failed {
			continue
		}
		u := autostart.Up{Name: n, Order: autostart.Unenrolled}
		if e, err := autostartDir().Get(n); err == nil {
			u.Order = e.Order
		}
		if lerr == nil {
			u.Timeout = time.Duration(st.Record.GuestStopTimeoutMS) * time.Millisecond
		}
		up = append(up, u)
	}
	return up, nil
}

// guestTimeout is autostart stop's --timeout: a positive duration for
// every guest, or none (also as "--timeout=", which is how the packaging
// passes an STOP_TIMEOUT left empty) for each guest's own.
type guestTimeout struct{ d *time.Duration }

func (t guestTimeout) Set(s string) error {
	if s == "" {
		*t.d = 0
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration such as 30s, or nothing for each guest's own")
	}
	if d <= 0 {
		return errors.New("want a positive duration (a guest given no time to power off is killed: that is what a stop's --force is for), or nothing for each guest's own")
	}
	*t.d = d
	return nil
}

func (t guestTimeout) String() string {
	if t.d == nil || *t.d == 0 {
		return ""
	}
	return t.d.String()
}

func (guestTimeout) Type() string { return "duration" }

type stopper struct{ r *runner.Runner }

func (s stopper) Stop(ctx context.Context, name string, timeout time.Duration, force bool) error {
	err := s.r.Stop(ctx, name, runner.StopOptions{Timeout: timeout, Force: force})
	if errors.Is(err, runner.ErrNotRunning) {
		return nil
	}
	return err
}
