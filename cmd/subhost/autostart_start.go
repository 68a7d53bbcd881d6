package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/autostart"
	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/internal/supervisor"
)

func newAutostartStartCmd() *cobra.Command {
	var opts autostart.StartOptions
	cmd := &cobra.Command{
		Use:   "start [--group G] [--parallel N]",
		Short: "Start the enrolled subhosts in ascending order",
		Long: `Start the enrolled subhosts in ascending order; those of equal order start
in parallel (at most --parallel at once), and an order's --delay is waited
out before the next order. Each first waits, at most 30s, for the bridges
its BRIDGES name: at host boot they may come up late. Subhosts already up
are left alone. A subhost that fails is reported and the others still
start; the exit status is then 1 (2 when an enrolment file is not valid).`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Parallel < 1 {
				return usageError{fmt.Errorf("--parallel %d: want at least 1", opts.Parallel)}
			}
			if opts.Group != "" {
				if err := autostart.ValidGroup(opts.Group); err != nil {
					return usageError{err}
				}
			}
			entries, bad := enrolled()
			r, err := newRunner()
			if err != nil {
				return err
			}
			r.Progress = nil
			ops := &starter{r: r}
			out := cmd.OutOrStdout()
			var mu sync.Mutex
			opts.Report = func(res autostart.Result) {
				mu.Lock()
				defer mu.Unlock()
				switch {
				case res.Err != nil:
					fmt.Fprintf(os.Stderr, "subhost %s (order %d): FAILED: %v\n", res.Name, res.Order, res.Err)
				case res.Skipped != "":
					fmt.Fprintf(out, "subhost %s (order %d): %s\n", res.Name, res.Order, res.Skipped)
				default:
					fmt.Fprintf(out, "subhost %s (order %d): started in %s\n", res.Name, res.Order, res.Took.Round(time.Millisecond))
				}
			}
			results := autostart.Start(cmd.Context(), entries, ops, opts)
			if n := autostart.Failed(results); n > 0 {
				fmt.Fprintf(os.Stderr, "subhost: %d of %d enrolled subhosts failed to start\n", n, len(results))
				return silentError{exitFailed}
			}
			if bad {
				return silentError{exitBadInput}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Group, "group", "", "start only the subhosts enrolled in this group")
	cmd.Flags().IntVar(&opts.Parallel, "parallel", runtime.NumCPU(), "how many subhosts of equal order start at once")
	return cmd
}

// starter starts one subhost as `subhost run --detach` does: with a
// supervisor of its own.
type starter struct{ r *runner.Runner }

func (s *starter) Running(name string) bool {
	rep, err := describe(g.StateDir, name)
	return err == nil && isUp(rep.State)
}

func (s *starter) Bridges(e autostart.Entry) ([]string, error) {
	plan, err := s.r.MakePlan(runner.Target{Name: e.Name, Pipeline: e.Pipeline, Home: e.Home})
	if err != nil {
		return nil, err
	}
	v, _ := plan.Subhost.Lookup("BRIDGES")
	var bridges []string
	for _, w := range v.Words {
		if b, _, ok := strings.Cut(w, ":"); ok && b != "" {
			bridges = append(bridges, b)
		}
	}
	return bridges, nil
}

// BridgeExists looks in this process's network namespace (not /sys, which
// shows the namespace of whoever mounted it).
func (s *starter) BridgeExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

func (s *starter) Start(ctx context.Context, e autostart.Entry) error {
	_, err := supervisor.StartDetached(ctx, supervisor.Spec{Settings: g, Target: runner.Target{Name: e.Name, Pipeline: e.Pipeline, Home: e.Home}})
	return err
}
