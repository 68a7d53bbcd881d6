package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/subhost/subhost/internal/console"
	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/internal/supervisor"
	"github.com/subhost/subhost/internal/supervisor/events"
	"github.com/subhost/subhost/internal/timeline"
)

type targetFlags struct {
	pipeline string
	home     string
	config   string
}

func (t *targetFlags) register(cmd *cobra.Command, defaultPipeline string) {
	f := cmd.Flags()
	f.StringVarP(&t.pipeline, "pipeline", "p", defaultPipeline, "the pipeline to run (see `subhost pipelines`)")
	f.StringVar(&t.home, "home", "", "the subhost's own directory (default: the pipeline's home followed by NAME)")
	f.StringVar(&t.config, "config", "", "the subhost's bash config (default: HOME/config)")
	cmd.RegisterFlagCompletionFunc("pipeline", completePipelines)
}

func (t *targetFlags) target(name string) runner.Target {
	return runner.Target{Name: name, Pipeline: t.pipeline, Home: t.home, Config: t.config}
}

func newRunCmd() *cobra.Command {
	var t targetFlags
	var detach, supervise, timings bool
	cmd := &cobra.Command{
		Use:   "run [--pipeline P] [--home DIR] [--config FILE] [--detach | --supervise] NAME",
		Short: "Bring a subhost up and boot its guest",
		Long: `Bring every stage of the pipeline up in order, then boot the guest with its
console on this terminal. On any failure every stage that was started is
brought down again, in reverse, and the host is left as it was.

--supervise is the mode for service managers (systemd's subhost@.service,
start-stop-daemon, runit): subhost stays in the foreground as the guest's
supervisor, the console goes to its log only, READY=1 goes to
$NOTIFY_SOCKET once the guest's PID 1 runs, SIGTERM powers the guest off
and tears down (exit 0), and the exit status is 1 when the guest crashed.
Started by systemd in a unit with Delegate=yes (systemd 251 or later marks
its cgroup delegated), the supervisor moves itself into <unit>/supervisor
and the guest's cgroups go below the unit's, <unit>/subhost/NAME, in the
cgroup2 tree (and name=systemd on hybrid hosts) instead of subhost/NAME
at the root; its log says which, and why.`,
		Args:              exactArgs(1, "NAME"),
		ValidArgsFunction: completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if supervise && detach {
				return usageError{fmt.Errorf("--detach and --supervise exclude each other")}
			}
			if front != nil && !detach {
				return usageError{fmt.Errorf("%s is for subhost's front, with run --detach", events.FDFlag)}
			}
			if supervise {
				if err := enrolledDefaults(cmd, &t, args[0]); err != nil {
					return err
				}
			}
			// Check what can be checked here, so that bad input is
			// reported before a supervisor starts.
			r, err := newRunner()
			if err != nil {
				return err
			}
			plan, err := r.MakePlan(t.target(args[0]))
			if err != nil {
				return err
			}
			if front != nil {
				return superviseForFront(cmd.Context(), r, plan, t.target(args[0]), timings)
			}
			if supervise {
				return runSupervised(cmd.Context(), t.target(args[0]))
			}
			cliMarks.Add("cli", "plan made (pipeline, config, plugins found)")
			if !timings {
				cliMarks = nil
			}
			return runSubhost(cmd, t.target(args[0]), detach)
		},
	}
	t.register(cmd, "pretend-boot")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "run in the background; return once the guest's PID 1 runs")
	cmd.Flags().BoolVar(&supervise, "supervise", false, "stay in the foreground as the guest's supervisor, for a service manager (no console relay; READY=1 on $NOTIFY_SOCKET)")
	cmd.Flags().BoolVar(&timings, "timings", false, "print the boot's timeline (each process start and stage call, to the guest's first console output) on standard error")
	return cmd
}

// runSubhost starts a supervisor and, unless detached, relays the console
// until the guest's session ends.
func runSubhost(cmd *cobra.Command, t runner.Target, detach bool) error {
	cliMarks.Add("cli", "start supervisor")
	sup, evR, err := supervisor.Start(supervisor.Spec{Settings: g, Target: t, Timings: cliMarks != nil, Detached: detach})
	if err != nil {
		return err
	}
	defer evR.Close()
	// Until the guest runs, an interrupt here is an interrupt of the boot:
	// pass it on, the supervisor rolls back.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			sup.Process.Signal(s)
		}
	}()

	evs := make(chan supervisor.Event, 16)
	go func() {
		defer close(evs)
		rd := events.NewReader(evR)
		for e, ok := rd.Next(); ok; e, ok = rd.Next() {
			evs <- e
		}
	}()
	progress := term.IsTerminal(int(os.Stderr.Fd()))
	var ready *supervisor.Event
	log := "" // the supervisor's, once it has one
	for e := range evs {
		if e.Progress != "" && progress {
			fmt.Fprint(os.Stderr, e.Progress)
		}
		if e.Log != "" {
			log = e.Log
		}
		if e.Error != "" {
			sup.Wait()
			return supervisor.ErrOf(e)
		}
		if e.Ready {
			cliMarks.Add("cli", "supervisor reports the guest running")
			ready = &e
			break
		}
	}
	if ready != nil && ready.PID != 0 && cliMarks != nil {
		printTimeline(evs)
	}
	if ready == nil {
		return supervisor.EndedEarly(t.Name, sup.Wait(), log)
	}
	out := cmd.OutOrStdout()
	if ready.PID == 0 {
		sup.Wait()
		fmt.Fprintf(out, "subhost %s is %s (its pipeline launches no guest)\n", t.Name, ready.Status)
		return nil
	}
	if detach {
		sup.Process.Release()
		fmt.Fprintf(out, "subhost %s running (guest pid %d); console: subhost console %s\n", t.Name, ready.PID, t.Name)
		return nil
	}
	res, err := attachConsole(context.Background(), supervisor.ConsoleSocket(g.StateDir, t.Name))
	if res == console.Detached {
		sup.Process.Release()
		fmt.Fprintf(os.Stderr, "\r\nsubhost %s: detached; it runs on (subhost console %s, subhost stop %s)\n", t.Name, t.Name, t.Name)
		return nil
	}
	if err != nil && res == 0 {
		fmt.Fprintf(os.Stderr, "subhost: console: %v\n", err)
	}
	var last supervisor.Event
	for e := range evs {
		if e.Status != "" || e.Error != "" {
			last = e
		}
	}
	waitErr := sup.Wait()
	if last.Error != "" {
		return supervisor.ErrOf(last)
	}
	if last.Status != "" && !progress {
		return nil
	}
	if last.Status != "" {
		fmt.Fprintf(os.Stderr, "subhost %s: guest %s; %s\n", t.Name, last.Guest, last.Status)
		return nil
	}
	if waitErr != nil {
		return fmt.Errorf("subhost %s: supervisor: %v; see %s", t.Name, waitErr, g.SupervisorLog(t.Name))
	}
	return nil
}

// cliMarks is the CLI's part of the boot's timeline (run --timings); nil
// when not asked for.
var cliMarks = timeline.New()

// printTimeline waits for the supervisor's part of the timeline and prints
// the whole of it on standard error.
func printTimeline(events <-chan supervisor.Event) {
	for e := range events {
		if e.Timeline != nil {
			cliMarks.Merge(e.Timeline)
			break
		}
	}
	fmt.Fprintln(os.Stderr, "boot timeline:")
	timeline.Write(os.Stderr, cliMarks.Marks())
}

// attachConsole relays the console at socket to this terminal: raw mode
// and escape sequences on a terminal, a plain copy otherwise.
func attachConsole(ctx context.Context, socket string) (console.AttachResult, error) {
	opts := console.AttachOptions{}
	if term.IsTerminal(int(os.Stdin.Fd())) {
		opts.EscapeChar = console.DefaultEscape
		fmt.Fprintf(os.Stderr, "subhost: console attached; %s then d detaches, %s then q powers off\r\n", "Ctrl-]", "Ctrl-]")
	}
	return console.Dial(ctx, socket, os.Stdin, os.Stdout, opts)
}
