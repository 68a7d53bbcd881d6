package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/subhost/subhost/internal/console"
	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/sdk"
)

// A guest is supervised by a background process, `subhost __supervise`,
// in its own session: it runs the pipeline, owns the console pty, reaps
// the guest's PID 1 as its child subreaper and tears down when the guest
// is gone. A foreground `subhost run` starts it, relays the console until
// the guest's session ends, and waits for it; `--detach` returns once the
// guest's PID 1 runs. The two talk over a pipe of JSON lines (event).

// LogDir holds each subhost's console log and its supervisor's log.
const LogDir = "/var/log/subhost"

// ConsoleLogMax caps a console log; it is rotated once, to NAME.log.1.
const ConsoleLogMax = 4 << 20

type event struct {
	Progress string `json:"progress,omitempty"`
	Ready    bool   `json:"ready,omitempty"`
	PID      int    `json:"pid,omitempty"`
	Error    string `json:"error,omitempty"`
	Kind     string `json:"kind,omitempty"`
	Guest    string `json:"guest,omitempty"`  // how the guest ended
	Status   string `json:"status,omitempty"` // the subhost's status at the end
}

func consoleSocket(name string) string {
	return filepath.Join(g.stateDir, name, "console.sock")
}

// startSupervisor starts `subhost __supervise` for the plan and returns
// it with the read end of its event pipe.
func startSupervisor(plan *runner.Plan) (*exec.Cmd, *os.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(LogDir, 0o700); err != nil {
		return nil, nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(LogDir, plan.Name+".supervisor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	defer logFile.Close()
	evR, evW, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer evW.Close()
	args := []string{"__supervise", "--pipeline", plan.Pipeline.Name, "--home", plan.Subhost.Home, "--state-dir", g.stateDir, "--log-level", g.level().String()}
	if plan.Subhost.ConfigFile != "" {
		args = append(args, "--config", plan.Subhost.ConfigFile)
	}
	for _, d := range g.pluginDirs {
		args = append(args, "--plugin-dir", d)
	}
	for _, f := range g.pipelineFiles {
		args = append(args, "--pipeline-file", f)
	}
	args = append(args, "--", plan.Name)
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = []*os.File{evW} // fd 3
	// Its own session: neither the terminal's signals nor the end of this
	// process reach the supervisor.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		evR.Close()
		return nil, nil, err
	}
	return cmd, evR, nil
}

// runSubhost starts a supervisor and, unless detached, relays the console
// until the guest's session ends.
func runSubhost(cmd *cobra.Command, _ *runner.Runner, plan *runner.Plan, detach bool) error {
	sup, evR, err := startSupervisor(plan)
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

	events := make(chan event, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(evR)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				events <- e
			}
		}
	}()
	progress := term.IsTerminal(int(os.Stderr.Fd()))
	var ready *event
	for e := range events {
		if e.Progress != "" && progress {
			fmt.Fprint(os.Stderr, e.Progress)
		}
		if e.Error != "" {
			sup.Wait()
			return eventError(e)
		}
		if e.Ready {
			ready = &e
			break
		}
	}
	if ready == nil {
		err := sup.Wait()
		return fmt.Errorf("subhost %s: the supervisor ended before the guest ran (%v); see %s", plan.Name, err, filepath.Join(LogDir, plan.Name+".supervisor.log"))
	}
	out := cmd.OutOrStdout()
	if ready.PID == 0 {
		sup.Wait()
		fmt.Fprintf(out, "subhost %s is %s (its pipeline launches no guest)\n", plan.Name, ready.Status)
		return nil
	}
	if detach {
		sup.Process.Release()
		fmt.Fprintf(out, "subhost %s running (guest pid %d); console: subhost console %s\n", plan.Name, ready.PID, plan.Name)
		return nil
	}
	res, err := attachConsole(context.Background(), consoleSocket(plan.Name))
	if res == console.Detached {
		sup.Process.Release()
		fmt.Fprintf(os.Stderr, "\r\nsubhost %s: detached; it runs on (subhost console %s, subhost stop %s)\n", plan.Name, plan.Name, plan.Name)
		return nil
	}
	if err != nil && res == 0 {
		fmt.Fprintf(os.Stderr, "subhost: console: %v\n", err)
	}
	var last event
	for e := range events {
		if e.Status != "" || e.Error != "" {
			last = e
		}
	}
	waitErr := sup.Wait()
	if last.Error != "" {
		return eventError(last)
	}
	if last.Status != "" && !progress {
		return nil
	}
	if last.Status != "" {
		fmt.Fprintf(os.Stderr, "subhost %s: guest %s; %s\n", plan.Name, last.Guest, last.Status)
		return nil
	}
	if waitErr != nil {
		return fmt.Errorf("subhost %s: supervisor: %v; see %s", plan.Name, waitErr, filepath.Join(LogDir, plan.Name+".supervisor.log"))
	}
	return nil
}

func eventError(e event) error {
	if e.Kind == sdk.KindInvalidConfig.String() {
		return sdk.Invalidf("%s", e.Error)
	}
	return errors.New(e.Error)
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

// eventWriter sends events up the pipe; safe for concurrent use.
type eventWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (ew *eventWriter) send(e event) {
	if ew == nil || ew.w == nil {
		return
	}
	data, _ := json.Marshal(e)
	ew.mu.Lock()
	defer ew.mu.Unlock()
	ew.w.Write(append(data, '\n'))
}

// Write makes the runner's progress lines events.
func (ew *eventWriter) Write(p []byte) (int, error) {
	ew.send(event{Progress: string(p)})
	return len(p), nil
}

func newSuperviseCmd() *cobra.Command {
	var t targetFlags
	cmd := &cobra.Command{
		Use:    "__supervise NAME",
		Hidden: true,
		Args:   exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return supervise(cmd.Context(), t, args[0])
		},
	}
	t.register(cmd, "pretend-boot")
	return cmd
}

func supervise(ctx context.Context, t targetFlags, name string) error {
	ev := &eventWriter{}
	if f := os.NewFile(3, "events"); f != nil {
		if _, err := f.Stat(); err == nil {
			ev.w = f
			defer f.Close()
		}
	}
	err := superviseRun(ctx, t, name, ev)
	if err != nil {
		ev.send(event{Error: err.Error(), Kind: sdk.KindOf(err).String()})
	}
	return err
}

func superviseRun(ctx context.Context, t targetFlags, name string, ev *eventWriter) error {
	if err := runner.BecomeSubreaper(); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	r, err := g.newRunner()
	if err != nil {
		return err
	}
	r.Progress = ev
	plan, err := r.MakePlan(t.target(name))
	if err != nil {
		return err
	}
	con, err := console.New()
	if err != nil {
		return err
	}
	defer con.Close()
	if err := con.LogTo(filepath.Join(LogDir, name+".log"), ConsoleLogMax); err != nil {
		return err
	}
	launched := false
	st, err := r.Run(ctx, plan, runner.RunOptions{
		Console: con.SlavePath(),
		Supervise: func(ctx context.Context, sup *runner.Supervision) error {
			launched = true
			sup.SetOperation("supervise")
			con.CloseSlave()
			serveCtx, stopServing := context.WithCancel(context.Background())
			defer stopServing()
			if err := con.Serve(serveCtx, consoleSocket(name)); err != nil {
				r.Logger.Error("console socket", "error", err)
			}
			readySent := false
			outcome, err := sup.Loop(ctx, runner.LoopOptions{
				// Stop requests arrive as SIGTERM (ctx), from `subhost
				// stop` or a service manager.
				PowerOff: con.PowerOffRequests(),
				BeforeReboot: func() error {
					drainConsole(con)
					return con.Rearm()
				},
				OnGuest: func(pid int) {
					if !readySent {
						ev.send(event{Ready: true, PID: pid})
						readySent = true
					}
					shedStartupPages()
				},
			})
			drainConsole(con)
			stopServing()
			con.Close()
			if err == nil {
				ev.send(event{Guest: outcome.Guest.String(), Status: outcome.Status})
			}
			return err
		},
	})
	if err == nil && !launched {
		// A pipeline without a guest (no init stage) is done once it is up.
		ev.send(event{Ready: true, Status: st.Status})
	}
	return err
}

// drainConsole waits (briefly) until the console has read everything the
// guest's last session wrote: PID 1 is reaped before its final output has
// necessarily been read from the pty, and closing the console then would
// cut off the end of the session.
func drainConsole(con *console.Console) {
	select {
	case <-con.Done():
	case <-time.After(2 * time.Second):
	}
}
