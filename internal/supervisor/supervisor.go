// Package supervisor is the process that supervises one guest,
// `subhost __supervise`. It runs in a session of its own: it runs the
// pipeline, owns the console pty, reaps the guest's PID 1 as its child
// subreaper and tears down when the guest is gone. A foreground
// `subhost run` starts it (Start), relays the console until the guest's
// session ends, and waits for it; `--detach` returns once the guest's PID 1
// runs. The two talk over a pipe of JSON lines (Event, package events).
// The installed subhost's `run --detach` (cmd/subhost-front) skips a
// process: the full CLI it starts is the supervisor (SuperviseDetached).
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/subhost/subhost/internal/cgroups"
	"github.com/subhost/subhost/internal/console"
	"github.com/subhost/subhost/internal/monitor"
	"github.com/subhost/subhost/internal/pageshed"
	"github.com/subhost/subhost/internal/pluginhost"
	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/internal/settings"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/internal/supervisor/events"
	"github.com/subhost/subhost/internal/timeline"
	"github.com/subhost/subhost/sdk"
)

// Command is the hidden subcommand that runs a supervisor.
const Command = "__supervise"

// ConsoleLogMax caps a console log; it is rotated once, to NAME.log.1.
const ConsoleLogMax = 4 << 20

// Spec is everything a supervisor needs: the global settings of the
// command that started it and the subhost. It travels as JSON on the
// supervisor's standard input, whole, so that a new global flag reaches
// the supervisor without anyone copying arguments by hand.
type Spec struct {
	Settings settings.Settings `json:"settings"`
	Target   runner.Target     `json:"target"`
	// Timings asks for the boot's timeline, sent as an event once the
	// guest has written its first console output (or after TimingsWait).
	Timings bool `json:"timings,omitempty"`
	// Detached: `run --detach`, whose supervisor becomes subhost-monitor
	// while the guest runs. A foreground run's stays whole: its console
	// client is there from the guest's first byte, and it is not the
	// long-lived case whose memory counts.
	Detached bool `json:"detached,omitempty"`
}

// TimingsWait is how long a supervisor asked for timings waits for the
// guest's first console output before it sends the timeline without it.
const TimingsWait = 5 * time.Second

// Event is one line of the supervisor's report to the command that
// started it (package events).
type Event = events.Event

// ErrOf turns an error event back into an error of the same kind.
func ErrOf(e Event) error {
	if e.Kind == sdk.KindInvalidConfig.String() {
		return sdk.Invalidf("%s", e.Error)
	}
	return fmt.Errorf("%s", e.Error)
}

// ConsoleSocket is where a subhost's console is served.
func ConsoleSocket(stateRoot, name string) string {
	return filepath.Join(stateRoot, name, "console.sock")
}

// Start starts `subhost __supervise` for spec and returns it with the read
// end of its event pipe.
func Start(spec Spec) (*exec.Cmd, *os.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer specR.Close()
	evR, evW, err := os.Pipe()
	if err != nil {
		specW.Close()
		return nil, nil, err
	}
	defer evW.Close()
	// The name on the command line is for ps; the spec is what counts.
	cmd := exec.Command(self, Command, spec.Target.Name)
	cmd.Stdin = specR
	// This standard error until the supervisor's boot begins and it
	// turns its own to its log (PendingLog.Open): a crash before that is
	// seen here. (Its standard output, nothing writes to.)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.ExtraFiles = []*os.File{evW} // fd 3
	// Its own session: neither the terminal's signals nor the end of this
	// process reach the supervisor.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		specW.Close()
		evR.Close()
		return nil, nil, err
	}
	err = json.NewEncoder(specW).Encode(spec)
	specW.Close()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		evR.Close()
		return nil, nil, fmt.Errorf("hand the supervisor its spec: %w", err)
	}
	return cmd, evR, nil
}

// checkLogDir refuses a log directory (--log-dir) that exists and is not
// a directory; one that does not exist yet is made with the first log.
func checkLogDir(s *settings.Settings) error {
	fi, err := os.Stat(s.Logs())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("log directory (--log-dir): %w", err)
	case !fi.IsDir():
		return sdk.Invalidf("log directory (--log-dir) %s: not a directory", s.Logs())
	}
	return nil
}

// openLog opens (for appending) the supervisor's log of the subhost name,
// making the log directory when needed.
func openLog(s *settings.Settings, name string) (*os.File, error) {
	if err := os.MkdirAll(s.Logs(), 0o700); err != nil {
		return nil, fmt.Errorf("log directory (--log-dir): %w", err)
	}
	f, err := os.OpenFile(s.SupervisorLog(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("supervisor log (--log-dir): %w", err)
	}
	return f, nil
}

// eventsPipe is the pipe for the reports on descriptor 3, or nil. Only a
// pipe is ours: a supervisor that subhost-monitor executes again may have
// nothing there (the front's pipe is close-on-exec), and the descriptor
// is then whatever was opened first, the Go runtime's own cgroup files
// included. An *os.File made for it would be written to, and would close
// it when collected, whatever it is by then.
func eventsPipe() *os.File {
	var st syscall.Stat_t
	if err := syscall.Fstat(3, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return nil
	}
	return os.NewFile(3, "events")
}

// Main is the supervisor process: it reads its spec from standard input
// and reports on fd 3, when that is open. With handoverFD (not -1) it is
// the supervisor executed again by subhost-monitor, and the spec comes in
// the hand-over.
func Main(ctx context.Context, handoverFD int) error {
	marks := timeline.New()
	marks.AddAt(timeline.ProcessStart(), "supervisor", "exec (estimate: less its CPU time so far)")
	marks.Add("supervisor", "main")
	ev := NewEventWriter(nil)
	if f := eventsPipe(); f != nil {
		ev = NewEventWriter(f)
		defer f.Close()
	}
	var spec Spec
	var from *monitor.Handover
	var logs *PendingLog
	var err error
	if handoverFD >= 0 {
		var h monitor.Handover
		if h, err = monitor.Read(handoverFD); err == nil {
			err = json.Unmarshal(h.Spec, &spec)
		}
		from, marks = &h, nil
	} else if err = json.NewDecoder(os.Stdin).Decode(&spec); err != nil {
		err = fmt.Errorf("read the supervisor's spec from standard input: %w", err)
	}
	if err == nil {
		if !spec.Timings {
			marks = nil
		}
		monitor := ""
		if spec.Detached {
			monitor = monitorPath()
		}
		// A new boot's log waits for the boot to begin; a supervision
		// handed back already writes to it.
		if from == nil {
			logs = NewPendingLog()
			spec.Settings.LogOutput = logs
		}
		var r *runner.Runner
		var plan *runner.Plan
		if r, plan, err = prepare(spec, ev, marks, from); err == nil {
			err = supervise(ctx, r, plan, spec, ev, marks, from, monitor, logs)
		}
		if err != nil && logs != nil {
			logs.Abandon(Detail(&spec.Settings))
		}
	}
	if err != nil {
		ev.Send(Event{Error: err.Error(), Kind: sdk.KindOf(err).String()})
		if logs != nil && !logs.IsOpen() {
			return ReportedError{err}
		}
	}
	return err
}

// ReportedError is how Main ends when it failed before its log was open:
// its starter, which got the error as an event, prints it, on the
// standard error that is still this process's too; saying it here as
// well would say it twice.
type ReportedError struct{ Err error }

func (e ReportedError) Error() string { return e.Err.Error() }
func (e ReportedError) Unwrap() error { return e.Err }

// MonitorEnv set to "0" keeps the full supervisor in place of
// subhost-monitor while the guest runs (for debugging).
const MonitorEnv = "SUBHOST_MONITOR"

// monitorPath is subhost-monitor's path, or "" to stay the full
// supervisor (not installed, or turned off).
func monitorPath() string {
	if os.Getenv(MonitorEnv) == "0" {
		return ""
	}
	p, err := pluginhost.Shipped("subhost-monitor")
	if err != nil {
		return ""
	}
	return p
}

// Supervise runs the pipeline for spec and supervises its guest until it
// is gone for good, reporting on ev. marks, when not nil, collects the
// boot's timeline, which is sent once the guest has written to its console.
func Supervise(ctx context.Context, spec Spec, ev *EventWriter, marks *timeline.Recorder) error {
	r, plan, err := prepare(spec, ev, marks, nil)
	if err != nil {
		return err
	}
	return supervise(ctx, r, plan, spec, ev, marks, nil, "", nil)
}

// SuperviseDetached is `subhost run --detach` when the CLI process is
// itself the supervisor (started by the front, cmd/subhost-front): r made
// plan, with its logger writing to logs, which it opens, with standard
// output and error, once the boot begins. This process becomes
// subhost-monitor once the guest runs, as a supervisor started by Start
// does.
func SuperviseDetached(ctx context.Context, r *runner.Runner, plan *runner.Plan, spec Spec, ev *EventWriter, marks *timeline.Recorder, logs *PendingLog) error {
	spec.Detached = true
	r.Progress = ev
	r.Timeline = marks
	return supervise(ctx, r, plan, spec, ev, marks, nil, monitorPath(), logs)
}

// prepare makes the runner for spec and its plan: a new one (from nil) or
// the one of a supervision that subhost-monitor handed back.
func prepare(spec Spec, ev *EventWriter, marks *timeline.Recorder, from *monitor.Handover) (*runner.Runner, *runner.Plan, error) {
	newRunner, makePlan := spec.Settings.NewRunner, (*runner.Runner).MakePlan
	if from != nil {
		newRunner, makePlan = spec.Settings.ResumeRunner, (*runner.Runner).ResumePlan
	}
	r, err := newRunner()
	if err != nil {
		return nil, nil, err
	}
	r.Progress = ev
	r.Timeline = marks
	plan, err := makePlan(r, spec.Target)
	if err != nil {
		return nil, nil, err
	}
	marks.Add("supervisor", "plan made (pipeline, config, plugins found)")
	return r, plan, nil
}

// supervise runs plan (from nil) or picks up a supervision that
// subhost-monitor handed back (from), and supervises the guest. With a
// monitor, this process becomes it whenever a guest has started.
func supervise(ctx context.Context, r *runner.Runner, plan *runner.Plan, spec Spec, ev *EventWriter, marks *timeline.Recorder, from *monitor.Handover, monitor string, logs *PendingLog) error {
	if err := runner.BecomeSubreaper(); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	sv := &supervision{spec: spec, r: r, name: plan.Name, ev: ev, marks: marks, from: from, monitor: monitor, logs: logs}
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	sv.serveCtx = serveCtx
	// The console's socket goes into the subhost's state directory,
	// before the runner's lock (whose taking would empty a state root
	// left from before the host's reboot, the socket with it).
	if err := state.ForgetEarlierBoot(r.StateRoot); err != nil {
		return err
	}
	if err := sv.openConsole(); err != nil {
		return err
	}
	defer func() { sv.con.Close() }()
	marks.Add("supervisor", "console ready")
	if from != nil {
		_, err := r.Resume(ctx, plan, sv.run)
		return err
	}
	// The logs are opened once the stages have validated; a log
	// directory that cannot be one is bad input found now, before any
	// plugin starts.
	if err := checkLogDir(&spec.Settings); err != nil {
		return err
	}
	launched := false
	// The boot will move the guest's launcher into its cgroups: the
	// kernel's slow part of the first such move is paid now, while the
	// plugins start, and kept paid until every stage is up (init's Up
	// returns once the launcher, placed, has executed the guest's PID 1).
	stopWarm := cgroups.KeepMigrationWarm()
	defer stopWarm()
	st, err := r.Run(ctx, plan, runner.RunOptions{
		Console:      sv.con.SlavePath(),
		BeforeChange: sv.openLogs,
		AfterUp:      stopWarm,
		Supervise: func(ctx context.Context, sup *runner.Supervision) error {
			launched = true
			return sv.run(ctx, sup)
		},
	})
	if err == nil && !launched {
		// A pipeline without a guest (no init stage) is done once it is up.
		ev.Send(Event{Ready: true, Status: st.Status})
	}
	return err
}

// supervision is one supervisor's hold on its guest and console.
type supervision struct {
	spec     Spec
	r        *runner.Runner
	name     string
	ev       *EventWriter
	marks    *timeline.Recorder
	from     *monitor.Handover // picked up from subhost-monitor
	monitor  string            // subhost-monitor's path; "" to stay
	serveCtx context.Context   // serving the console socket
	con      *console.Console
	served   bool // the socket is served (adopted with the console)
	// logs is the supervisor's log of a new boot, held until openLogs;
	// nil when standard error is the log already.
	logs *PendingLog
}

// openConsole makes the guest's console, or adopts the one handed back.
func (sv *supervision) openConsole() error {
	if sv.from != nil && sv.from.Console.Master >= 0 {
		con, err := console.Adopt(sv.serveCtx, sv.from.Console)
		if err == nil {
			sv.con, sv.served = con, sv.from.Console.Listener >= 0
			return nil
		}
		sv.r.Logger.Error("adopt the console from subhost-monitor; the guest's console output is lost until it reboots", sdk.LogKeyError, err)
	}
	con, err := console.New()
	if err != nil {
		return err
	}
	// A new boot's console log is opened with the boot (openLogs); a
	// supervision handed back without its console logs at once.
	if sv.from != nil {
		if err := con.LogTo(sv.spec.Settings.ConsoleLog(sv.name), ConsoleLogMax); err != nil {
			con.Close()
			return err
		}
	}
	sv.con = con
	return nil
}

// openLogs opens the boot's logs once its stages have validated, right
// before the first one changes the host: the supervisor's (when held
// until now) and the console's. The front learns the supervisor log's
// path, for its message should the supervisor end early.
func (sv *supervision) openLogs() error {
	if sv.logs != nil {
		path, err := sv.logs.Open(&sv.spec.Settings, sv.name)
		if err != nil {
			return err
		}
		sv.ev.Send(Event{Log: path})
	}
	return sv.con.LogTo(sv.spec.Settings.ConsoleLog(sv.name), ConsoleLogMax)
}

// Detail is where a boot refused before its logs were opened writes what
// it logged meanwhile (PendingLog.Abandon): standard error when the flags
// ask for detail (-v), nowhere otherwise (the refusal itself is
// reported).
func Detail(s *settings.Settings) io.Writer {
	if s.Detailed() {
		return os.Stderr
	}
	return nil
}

// run supervises the running guest until it is gone for good.
func (sv *supervision) run(ctx context.Context, sup *runner.Supervision) error {
	sup.SetOperation("supervise")
	sv.con.CloseSlave()
	if !sv.served {
		if err := sv.con.Serve(sv.serveCtx, ConsoleSocket(sv.r.StateRoot, sv.name)); err != nil {
			sv.r.Logger.Error("console socket", "error", err)
		}
		sv.served = true
	}
	resumed := sv.from != nil
	readySent := resumed
	opts := runner.LoopOptions{
		PowerOff: sv.con.PowerOffRequests(),
		BeforeReboot: func() error {
			drainConsole(sv.con)
			return sv.con.Rearm()
		},
		OnGuest: func(pid int) {
			// Rearm held the slave for the new guest across a reboot or
			// restart; the guest has it open now, and its session must be
			// able to end.
			sv.con.CloseSlave()
			if !readySent {
				sv.marks.Add("supervisor", fmt.Sprintf("guest PID 1 (%d) runs: ready", pid))
				sv.ev.Send(Event{Ready: true, PID: pid})
				readySent = true
				if sv.marks != nil {
					sendTimeline(sv.con, sv.marks, sv.ev)
				}
			}
			if resumed {
				resumed = false // the guest handed back is watched here
				return
			}
			sv.becomeMonitor(sup)
			pageshed.Shed(pageshed.Reclaim)
		},
	}
	if sv.from != nil {
		opts.StopAsked = sv.from.Reason == monitor.StopAsked || stopRequested(sv.r, sv.name)
		opts.PowerOffAsked = sv.from.Reason == monitor.PowerOffAsked
	}
	outcome, err := sup.Loop(ctx, opts)
	drainConsole(sv.con)
	sv.con.Close()
	if err == nil {
		sv.ev.Send(Event{Guest: outcome.Guest.String(), Status: outcome.Status})
	}
	return err
}

// sendTimeline sends the timeline once the guest has written to its
// console, or after TimingsWait (before the supervisor becomes
// subhost-monitor, which keeps no timeline).
func sendTimeline(con *console.Console, marks *timeline.Recorder, ev *EventWriter) {
	select {
	case t := <-con.FirstOutput():
		marks.AddAt(t, "guest", "first console output")
	case <-time.After(TimingsWait):
		marks.Add("guest", "no console output yet")
	}
	ev.Send(Event{Timeline: marks.Marks()})
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

// EventWriter sends events up the pipe (package events).
type EventWriter = events.Writer

// NewEventWriter sends events to w.
func NewEventWriter(w io.Writer) *EventWriter { return events.NewWriter(w) }
