package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/guestexit"
	"github.com/subhost/subhost/internal/proc"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/internal/stopreq"
	"github.com/subhost/subhost/sdk"
)

// Supervision is a supervisor's hold on a running guest: the subhost's
// lock (held until the supervisor is done) and its state.
type Supervision struct {
	s *session
	// stopping: an orderly stop is under way in this process.
	stopping bool
}

// Stopping reports whether the supervision is stopping the guest (its
// power-off runs in this process: no time to hand it over).
func (v *Supervision) Stopping() bool { return v.stopping }

// State is the subhost's current state.
func (v *Supervision) State() *state.State { return v.s.st }

// SetOperation records what the lock holder is doing.
func (v *Supervision) SetOperation(op string) { v.s.lock.SetOperation(op) }

// DefaultStopTimeout is how long a guest gets to power off when nobody
// said otherwise: neither the stop nor the stage that launched it.
const DefaultStopTimeout = stopreq.DefaultGuestTimeout

// LoopOptions connect the supervision loop to its surroundings. A full
// teardown is asked for by cancelling Loop's context (SIGTERM, from
// `subhost stop` or a service manager).
type LoopOptions struct {
	// PowerOff delivers requests to power the guest off (the console's
	// escape sequence); the pipeline's on_exit then decides what follows.
	PowerOff <-chan struct{}
	// BeforeReboot readies the console for the next guest session.
	BeforeReboot func() error
	// OnGuest is told of each guest start (the first, and after reboots).
	OnGuest func(pid int)
	// StopAsked and PowerOffAsked: the request came before the loop
	// started (to subhost-monitor, which handed back for it).
	StopAsked, PowerOffAsked bool
}

// Outcome is how supervision ended.
type Outcome struct {
	// Guest says how the guest's last PID 1 ended.
	Guest guestexit.Outcome
	// Status is the subhost's status afterwards: stopped, hibernating or
	// failed.
	Status string
}

// Loop supervises the guest until it is gone for good: it reaps PID 1
// (the runner is its child subreaper), starts it again on a reboot, and
// then tears everything down (on_exit "down", or a stop request) or keeps
// the mounts and network for a later run (on_exit "keep": hibernating).
func (v *Supervision) Loop(ctx context.Context, opts LoopOptions) (Outcome, error) {
	s := v.s
	if err := v.recordSupervisor(); err != nil {
		return Outcome{Status: s.st.Status}, err
	}
	// While it only waits for the guest, the supervisor gives the lock up,
	// so that `subhost stage` and `subhost stop` can work on the live
	// subhost; it takes it back (and the state as they left it) to act.
	s.lock.Suspend()
	powerOffAsked := false // by the console: not a failure to restart from
	// stop starts an orderly stop: a service manager's SIGTERM, or
	// `subhost stop`, which leaves its options beside the state first.
	// Down follows once the guest is reaped.
	stop := func() {
		v.stopping = true
		var stopOpts StopOptions // the guest's own timeout
		if req, ok := s.dir.TakeStopRequest(); ok {
			stopOpts = StopOptions{Timeout: time.Duration(req.TimeoutMS) * time.Millisecond, Force: req.Force}
		}
		s.prestartForDown(context.Background(), s.owed())
		go stopGuest(s.st.Record, stopOpts)
	}
	switch {
	case opts.StopAsked:
		stop()
	case opts.PowerOffAsked:
		powerOffAsked = true
		go stopGuest(s.st.Record, StopOptions{})
	}
	for {
		pid := s.st.Record.GuestPID
		if ctx.Err() != nil && !v.stopping {
			// Asked while the guest rebooted: before OnGuest, which
			// might hand the supervision over and lose the request.
			stop()
			ctx = context.Background()
		}
		if opts.OnGuest != nil {
			opts.OnGuest(pid)
		}
		exited := make(chan syscall.WaitStatus, 1)
		go func() { exited <- waitGuest(pid, s.st.Record.GuestStartTime) }()
		var ws syscall.WaitStatus
	wait:
		for {
			select {
			case ws = <-exited:
				break wait
			case <-ctx.Done():
				if !v.stopping {
					stop()
				}
				ctx = context.Background() // seen once
			case <-opts.PowerOff:
				powerOffAsked = true
				go stopGuest(s.st.Record, StopOptions{})
			}
		}
		outcome := guestexit.Classify(ws)
		s.r.Logger.Info("guest PID 1 ended", sdk.LogKeySubhost, s.plan.Name, "pid", pid, "how", guestexit.Describe(ws))
		if err := v.resume(); err != nil {
			return Outcome{Guest: outcome, Status: state.Failed}, err
		}
		if s.st == nil {
			// Every stage was taken down meanwhile (`subhost stage ... down`).
			return Outcome{Guest: outcome, Status: state.Stopped}, nil
		}
		s.st.Supervisor, s.st.SupervisorStartTime = 0, 0
		launcher := s.st.Launcher()
		s.st.ForgetGuest()
		restart := !v.stopping && !powerOffAsked && s.plan.Restart.wants(outcome)
		if restart {
			limiter := restartLimiter{times: s.st.RecentRestarts}
			err := limiter.allow(time.Now())
			s.st.RecentRestarts = limiter.times
			if err != nil {
				return v.giveUp(outcome, fmt.Errorf("%s=%s: %w; last end: %s", RestartVar, s.plan.Restart, err, guestexit.Describe(ws)))
			}
			s.st.Restarts++
			s.r.Logger.Warn("restarting the guest", "subhost", s.plan.Name, "policy", s.plan.Restart, "restarts", s.st.Restarts)
		}
		if (outcome == guestexit.Reboot || restart) && !v.stopping {
			err := v.reboot(launcher, opts)
			if err == nil {
				err = v.recordSupervisor()
			}
			if err != nil {
				s.r.Logger.Error("reboot failed", sdk.LogKeySubhost, s.plan.Name, sdk.LogKeyError, err)
				return v.finish(outcome, true, err)
			}
			s.lock.Suspend()
			// A power-off asked of the guest that ended (one that
			// rebooted anyway) is not the new guest's.
			powerOffAsked = false
			continue
		}
		return v.finish(outcome, v.stopping || s.plan.Pipeline.OnExit != "keep", nil)
	}
}

// giveUp ends supervision after too many restarts: the stages stay up
// (`subhost stop` takes them down) and the state says why, for status.
func (v *Supervision) giveUp(guest guestexit.Outcome, reason error) (Outcome, error) {
	s := v.s
	s.r.Logger.Error("not restarting the guest", "subhost", s.plan.Name, "reason", reason)
	s.st.Status = state.Failed
	s.st.Error = reason.Error()
	return Outcome{Guest: guest, Status: state.Failed}, errors.Join(reason, s.save())
}

// resume takes the lock back and reloads the state, which another
// operation may have changed while the supervisor only waited.
func (v *Supervision) resume() error {
	s := v.s
	if err := s.lock.Resume(context.Background(), 2*time.Minute); err != nil {
		return fmt.Errorf("take the lock back: %w", err)
	}
	st, err := s.dir.Load()
	switch {
	case errors.Is(err, state.ErrNoState):
		s.st = nil
	case err != nil:
		return err
	default:
		s.st = st
	}
	return nil
}

// recordSupervisor records this process as the guest's supervisor.
func (v *Supervision) recordSupervisor() error {
	s := v.s
	s.st.Supervisor = os.Getpid()
	s.st.SupervisorStartTime, _ = proc.StartTime(os.Getpid())
	return s.save()
}

// finish tears down or hibernates after the guest is gone (and has been
// forgotten).
func (v *Supervision) finish(guest guestexit.Outcome, teardown bool, cause error) (Outcome, error) {
	s := v.s
	if !teardown {
		s.st.Status = state.Hibernating
		return Outcome{Guest: guest, Status: state.Hibernating}, errors.Join(cause, s.save())
	}
	s.st.Status = state.Stopping
	// Down goes on whether or not this save works: it works from the
	// state in memory.
	saveErr := s.save()
	if err := s.downAll(context.Background()); err != nil {
		return Outcome{Guest: guest, Status: state.Failed}, errors.Join(cause, saveErr, err)
	}
	return Outcome{Guest: guest, Status: state.Stopped}, errors.Join(cause, saveErr)
}

// reboot starts the guest again on the same mounts and network: Up of the
// stage that launched it (its Up launches a new guest when the recorded
// one is gone).
func (v *Supervision) reboot(launcher int, opts LoopOptions) error {
	s := v.s
	if launcher < 0 {
		return fmt.Errorf("no stage launched the guest")
	}
	if opts.BeforeReboot != nil {
		if err := opts.BeforeReboot(); err != nil {
			return err
		}
	}
	s.st.Status = state.Booting
	err := s.up(context.Background(), launcher)
	s.killPlugins()
	if err != nil {
		return err
	}
	s.st.Status = state.Running
	s.st.GuestStarted = time.Now().UTC()
	// Recorded with the new guest in one save: `status` never sees the
	// guest running without its supervisor.
	s.st.Supervisor = os.Getpid()
	s.st.SupervisorStartTime, _ = proc.StartTime(os.Getpid())
	return s.save()
}

// waitGuest waits for the guest's PID 1 to end and returns its wait
// status. The runner is a child subreaper, so once the plugin that
// launched the guest is gone, PID 1 is the runner's child and its status
// can be reaped; if it is not (a supervisor started after the fact), the
// end is seen through a pidfd and counts as a power-off.
func waitGuest(pid int, startTime uint64) syscall.WaitStatus {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == nil {
			return syscall.WaitStatus(ws)
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		break
	}
	if p, err := proc.Open(pid, startTime); err == nil {
		for !p.WaitExit(time.Hour) {
		}
		p.Close()
	}
	return syscall.WaitStatus(guestexit.ExitPowerOff << 8)
}

// BecomeSubreaper makes this process the child subreaper of everything
// it starts, so that the guest's PID 1 becomes its child once the plugin
// that launched it exits.
func BecomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}
