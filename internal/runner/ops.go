package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/subhost/subhost/internal/pipeline"
	"github.com/subhost/subhost/internal/proc"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/internal/stopreq"
	"github.com/subhost/subhost/sdk"
)

// RunOptions tune Run.
type RunOptions struct {
	// Console is the host path of the guest console's pty, put in the boot
	// record before the first stage.
	Console string
	// Supervise is called, with the lock still held and no plugin
	// running, once every stage is up and a stage launched a guest.
	Supervise func(ctx context.Context, sup *Supervision) error
	// BeforeChange, when set, is called once every stage has validated
	// and right before the first stage's Up: the last moment a refused
	// run has changed nothing. Its error ends the run there. The
	// supervisor opens its logs then, so that bad input leaves none.
	BeforeChange func() error
	// AfterUp, when set, is called once every stage is up, before the
	// plugins are ended and the guest supervised: the first moment
	// nothing of the boot is left to do but bookkeeping. The supervisor
	// stops keeping the cgroup migration path warm then, not after the
	// plugins have gone (the guest's first forks take the slower path
	// while it moves).
	AfterUp func()
}

// Run brings every stage up in order. A subhost that is hibernating (or
// left half-up) is re-entered: Up adopts what exists.
func (r *Runner) Run(ctx context.Context, plan *Plan, opts RunOptions) (*state.State, error) {
	s, err := r.open(plan, "run")
	if err != nil {
		return nil, err
	}
	defer s.close()
	if s.st != nil && guestAlive(s.st) {
		return s.st, sdk.Conflictf("subhost %q is already running (guest pid %d)", plan.Name, s.st.Record.GuestPID)
	}
	if s.st != nil && s.st.Supervisor != 0 && proc.Alive(s.st.Supervisor, s.st.SupervisorStartTime) {
		// Its guest has just ended and subhost-monitor is handing the
		// supervision back (the lock is free meanwhile): that
		// supervisor restarts or takes down what is up.
		return s.st, sdk.Conflictf("subhost %q is supervised by pid %d, which is restarting or stopping its guest", plan.Name, s.st.Supervisor)
	}
	var all []int
	for i := range plan.Stages {
		if !s.skips(i) {
			all = append(all, i)
		}
	}
	if err := s.startAndValidate(ctx, all, true); err != nil {
		return nil, err
	}
	if s.st != nil && s.st.Pipeline != plan.Pipeline.Name {
		return s.st, sdk.Conflictf("subhost %q has state from pipeline %q; stop it first", plan.Name, s.st.Pipeline)
	}
	if err := sameSubhost(plan, s.st); err != nil {
		return s.st, err
	}
	if opts.BeforeChange != nil {
		if err := opts.BeforeChange(); err != nil {
			return s.st, err
		}
	}
	// A stop's request that no supervisor took (it had gone, and the stop
	// failed half way) is not this boot's: its monitor would take it for
	// one and tear the new guest down.
	s.dir.TakeStopRequest()
	if s.st == nil {
		s.st = s.newState()
	}
	s.st.Status, s.st.Error, s.st.Subhost = state.Booting, "", plan.Subhost
	s.st.RecentRestarts = nil // a run starts the restart limit afresh
	s.st.Console = opts.Console
	s.st.ForgetGuest()
	if err := s.upFrom(ctx, 0, func() {
		s.st.Status = state.Running
		if s.st.Record.GuestPID != 0 {
			s.st.GuestStarted = time.Now().UTC()
		}
	}); err != nil {
		return s.st, err
	}
	if opts.AfterUp != nil {
		opts.AfterUp()
	}
	// No plugin stays alive while the guest runs.
	s.killPlugins()
	r.Timeline.Add("supervisor", "plugins ended")
	if opts.Supervise != nil && s.st.Record.GuestPID != 0 {
		return s.st, opts.Supervise(ctx, &Supervision{s: s})
	}
	return s.st, nil
}

// Resume picks up the supervision of a running subhost whose supervisor
// became subhost-monitor and has executed the full supervisor again: this
// process is that supervisor (same PID, the guest still its child). It
// takes the lock back, reloads the state and calls supervise, as Run does
// once the guest runs.
func (r *Runner) Resume(ctx context.Context, plan *Plan, supervise func(ctx context.Context, sup *Supervision) error) (*state.State, error) {
	d := r.dir(plan.Name)
	lock, err := d.WaitLock(ctx, "supervise", 2*time.Minute)
	if err != nil {
		return nil, err
	}
	s := r.newSession(plan, d, lock)
	defer s.close()
	if s.st, err = d.Load(); err != nil {
		return nil, err
	}
	return s.st, supervise(ctx, &Supervision{s: s})
}

// ResumePlan is the plan for Resume: made from t as at boot, or, when
// that fails now (a config edited since), rebuilt from the state, so that
// the running subhost can still be supervised and taken down.
func (r *Runner) ResumePlan(t Target) (*Plan, error) {
	if r.Pipelines == nil { // they did not load (settings.ResumeRunner)
		return r.planFromState(r.dir(t.Name))
	}
	plan, err := r.MakePlan(t)
	if err == nil {
		// A pipeline edited or upgraded since the boot (a stage added,
		// say) would pair its stages with another stage's records.
		st, lerr := r.dir(t.Name).Load()
		if lerr != nil {
			return plan, nil // Resume reports it
		}
		if err = sameSubhost(plan, st); err == nil {
			return plan, nil
		}
	}
	r.Logger.Warn("resuming with the plan recorded at boot", sdk.LogKeySubhost, t.Name, sdk.LogKeyError, err)
	return r.planFromState(r.dir(t.Name))
}

// StopOptions tune Stop.
type StopOptions struct {
	// Timeout is how long the guest gets to power off after SIGPWR; 0:
	// as long as its PID 1 was given (see timeout).
	Timeout time.Duration
	// Force kills the guest at once, and a supervisor that does not finish
	// the stop in time.
	Force bool
}

// timeout is how long the guest of rec gets to power off
// (stopreq.GuestTimeout).
func (o StopOptions) timeout(rec sdk.BootRecord) time.Duration {
	return stopreq.GuestTimeout(o.Timeout, rec.GuestStopTimeoutMS)
}

// supervisorWait is how long a stop waits for the supervisor it asked to
// stop the guest of rec (stopreq.SupervisorWait).
func (o StopOptions) supervisorWait(rec sdk.BootRecord) time.Duration {
	return stopreq.SupervisorWait(o.Timeout, o.Force, rec.GuestStopTimeoutMS)
}

// ErrNotRunning is returned by Stop for a subhost without state.
var ErrNotRunning = errors.New("not running")

// noState is the error for subhost d without state: ErrNotRunning, unless
// a boot holds its lock (its plugins start and validate before it writes
// any state, which a site's script stage can make take seconds).
func noState(d state.Dir) error {
	if h, busy := d.Busy(); busy {
		return d.BusyError(h)
	}
	d.Tidy() // a run killed before it saved anything left its lock
	return ErrNotRunning
}

// Stop powers the guest off and runs Down for every stage in reverse,
// from the recorded state. When a supervisor holds the subhost it is
// asked to stop (SIGTERM, as a service manager would) and waited for.
func (r *Runner) Stop(ctx context.Context, name string, opts StopOptions) error {
	d := r.dir(name)
	st, err := d.Load()
	if errors.Is(err, state.ErrNoState) {
		return noState(d)
	}
	if err != nil {
		return err
	}
	lock, err := r.stopLock(ctx, d, st, opts)
	if err != nil {
		return err
	}
	if lock == nil {
		return nil // the supervisor finished the job
	}
	// This stop does the job itself now: a request it left for a
	// supervisor that went without taking it must not outlive it.
	d.TakeStopRequest()
	plan, err := r.planFromState(d)
	if err != nil {
		lock.Release()
		if errors.Is(err, state.ErrNoState) {
			return nil
		}
		return err
	}
	s := r.newSession(plan, d, lock)
	defer s.close()
	if s.st, err = d.Load(); err != nil {
		return err
	}
	s.st.Status = state.Stopping
	// A state that cannot be saved does not stop the stop: Down works from
	// the state in memory, and the error is reported with the rest.
	saveErr := s.save()
	guestErr := s.powerOff(ctx, s.st.Record, s.owed(), opts)
	// A guest that would not die (say, one that froze its own cgroup) is
	// the launching stage's to finish off: its Down still runs.
	if err := s.downAll(ctx); err != nil {
		return errors.Join(guestErr, saveErr, err)
	}
	return nil
}

// stopSupervisor asks the supervisor holding the lock to stop, and waits
// for it. It returns the lock if the teardown is still ours to do, nil if
// the supervisor did it.
// busyWait bounds how long a stop waits for the lock of a subhost whose
// state names no living supervisor.
const busyWait = time.Minute

// stopLock takes the subhost's lock for a stop: from its supervisor, asked
// to stop (nil: it did the whole job), or directly. A lock held with no
// living supervisor recorded is waited for, the state read again each
// time: the supervisor itself holds it between a guest's end and its
// next boot or its teardown, with its PID not yet recorded again, and a
// run may be re-entering the subhost.
func (r *Runner) stopLock(ctx context.Context, d state.Dir, st *state.State, opts StopOptions) (*state.Lock, error) {
	deadline := time.Now().Add(busyWait)
	for {
		if st.Supervisor != 0 && proc.Alive(st.Supervisor, st.SupervisorStartTime) {
			return r.stopSupervisor(ctx, d, st, opts)
		}
		lock, err := d.TryLock("stop")
		if !errors.Is(err, state.ErrBusy) || time.Now().After(deadline) {
			return lock, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
		if st, err = d.Load(); errors.Is(err, state.ErrNoState) {
			return nil, nil // taken down meanwhile
		} else if err != nil {
			return nil, err
		}
	}
}

func (r *Runner) stopSupervisor(ctx context.Context, d state.Dir, st *state.State, opts StopOptions) (*state.Lock, error) {
	sup, err := proc.Open(st.Supervisor, st.SupervisorStartTime)
	if err != nil {
		return d.TryLock("stop")
	}
	defer sup.Close()
	d.WriteStopRequest(state.StopRequest{TimeoutMS: opts.Timeout.Milliseconds(), Force: opts.Force})
	sup.Signal(sigTerm)
	wait := opts.supervisorWait(st.Record)
	switch exited, stopped := stopreq.Await(sup, wait); {
	case exited:
	case !opts.Force && stopped:
		return nil, stopreq.StoppedError(d.Name, st.Supervisor)
	case !opts.Force:
		return nil, stopreq.NotFinishedError(d.Name, st.Supervisor, wait)
	default:
		sup.Signal(sigKill)
		sup.WaitExit(5 * time.Second)
	}
	// Whether or not the supervisor took our request (it may have been
	// tearing down already), the lock is free now: take it, so that
	// releasing it removes whatever is left of the subhost's directory.
	lock, err := d.TryLock("stop")
	if err != nil {
		return nil, err
	}
	if _, err := d.Load(); errors.Is(err, state.ErrNoState) {
		lock.Release()
		return nil, nil
	}
	return lock, nil
}

// planFromState rebuilds a plan from what was recorded, so that Down sees
// the stages, plugins, parameters and config that Up saw.
func (r *Runner) planFromState(d state.Dir) (*Plan, error) {
	st, err := d.Load()
	if err != nil {
		return nil, err
	}
	var pl *pipeline.Pipeline
	if r.Pipelines != nil {
		pl, _ = r.Pipelines.Get(st.Pipeline)
	}
	if pl == nil {
		pl = &pipeline.Pipeline{Name: st.Pipeline, Home: st.Home, OnExit: st.OnExit}
	}
	plan := &Plan{Name: st.Name, Pipeline: pl, Subhost: st.Subhost}
	// The RESTART the subhost was booted with (checked then), so that a
	// supervisor that falls back on this plan still restarts its guest.
	plan.Restart, _ = restartPolicy(st.Subhost)
	for _, ss := range st.Stages {
		ps := PlannedStage{Stage: pipeline.Stage{Name: ss.Name, Plugin: ss.Plugin, Params: ss.Params, Timeout: pipeline.DefaultTimeout}, Path: ss.Path}
		for _, def := range pl.Stages {
			if def.Name == ss.Name && def.Plugin == ss.Plugin {
				ps.Timeout, ps.SHA256 = def.Timeout, def.SHA256
			}
		}
		plan.Stages = append(plan.Stages, ps)
	}
	return plan, nil
}

// sameSubhost checks that plan has the home and the stages recorded in
// st (none: no state), the stages by name and plugin and in the same
// order. The runner pairs a
// plan's stages with the recorded ones by their place in the pipeline:
// with a pipeline edited (or upgraded) since the boot, a stage would get
// another's state, and one added would never be taken down.
func sameSubhost(plan *Plan, st *state.State) error {
	if st == nil {
		return nil
	}
	// Its stages find what they made from the home (mount-loop's live
	// directory, say): another one would not, and what is mounted under
	// the recorded one would be lost.
	if st.Home != "" && st.Home != plan.Subhost.Home {
		return sdk.Conflictf("subhost %q was brought up from home %q, not %q; run it with that home (--home), or stop it first",
			plan.Name, st.Home, plan.Subhost.Home)
	}
	same := len(plan.Stages) == len(st.Stages)
	for i := 0; same && i < len(plan.Stages); i++ {
		same = plan.Stages[i].Name == st.Stages[i].Name && plan.Stages[i].Plugin == st.Stages[i].Plugin
	}
	if same {
		return nil
	}
	now := make([]string, len(plan.Stages))
	for i, s := range plan.Stages {
		now[i] = s.Name
	}
	then := make([]string, len(st.Stages))
	for i, s := range st.Stages {
		then[i] = s.Name
	}
	return sdk.Conflictf("subhost %q was brought up with pipeline %q as stages %s, which now has %s; stop it first",
		plan.Name, st.Pipeline, strings.Join(then, ", "), strings.Join(now, ", "))
}

// guestAlive reports whether the recorded guest PID 1 still runs.
func guestAlive(st *state.State) bool {
	return st.Record.GuestPID != 0 && proc.Alive(st.Record.GuestPID, st.Record.GuestStartTime)
}

// powerOff is the first half of every stop, by `subhost stop` or by the
// supervisor: the guest is asked to power off (then killed), and the
// plugins that Down will need start meanwhile. The second half is downAll.
func (s *session) powerOff(ctx context.Context, rec sdk.BootRecord, owed []int, opts StopOptions) error {
	prestarted := s.prestartForDown(ctx, owed)
	err := stopGuest(rec, opts)
	<-prestarted
	return err
}

// prestartForDown starts the plugins of the owed stages in the background
// and returns a channel closed once they are up. downAll and
// killPlugins wait for it first: a start that finished after a stage's
// Down had retired its plugin, or after the session killed its plugins,
// would leave a plugin running that nobody kills.
func (s *session) prestartForDown(ctx context.Context, owed []int) <-chan struct{} {
	done := make(chan struct{})
	s.prestarts.Add(1)
	go func() {
		defer s.prestarts.Done()
		defer close(done)
		s.startForDown(ctx, owed)
	}()
	return done
}

// stopGuest asks the guest's PID 1 to power off (SIGPWR), waits, then
// kills it; killing PID 1 of a PID namespace kills every process in it.
// Only the process recorded as that subhost's PID 1 (PID and start time)
// is ever signalled.
func stopGuest(rec sdk.BootRecord, opts StopOptions) error {
	if rec.GuestPID == 0 {
		return nil
	}
	p, err := proc.Open(rec.GuestPID, rec.GuestStartTime)
	if err != nil {
		return nil // gone already
	}
	defer p.Close()
	if !opts.Force {
		// The kernel drops a signal to a PID 1 that has no handler for it
		// yet (a guest that has only just started): repeat the request,
		// backing off, until the timeout. subhost-init acts on the first.
		deadline := time.Now().Add(opts.timeout(rec))
		for wait := 50 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, time.Second) {
			p.Signal(sigPwr)
			if p.WaitExit(min(wait, time.Until(deadline))) {
				return nil
			}
		}
	}
	p.Signal(sigKill)
	if !p.WaitExit(10 * time.Second) {
		return fmt.Errorf("guest pid %d did not die after SIGKILL", rec.GuestPID)
	}
	return nil
}
