package main

import (
	"context"
	"fmt"
	"os"

	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/internal/supervisor"
	"github.com/subhost/subhost/internal/supervisor/events"
	"github.com/subhost/subhost/sdk"
)

// front is set when the front (cmd/subhost-front) started this process,
// with events.FDFlag, to be the supervisor of `subhost run --detach`: one
// heavy Go process fewer on the way to the guest than a CLI that starts
// the supervisor and waits for it.
var front *frontReport

// frontReport is how a CLI started by the front reports: events on the
// descriptor the front passed.
type frontReport struct {
	ev *events.Writer
	// log is the supervisor's log (the logger's output), held until the
	// boot begins: bad input leaves none.
	log *supervisor.PendingLog
}

// end reports the error that ends this process: to the front, which
// writes msg on its standard error and exits with code, and to the
// supervisor's log once there is one. A boot that ended before it had
// one shows what it logged only when asked for detail (-v), before the
// front's message.
func (f *frontReport) end(err error, msg string, code int) {
	if f.log.IsOpen() {
		fmt.Fprint(os.Stderr, msg)
	} else {
		f.log.Abandon(supervisor.Detail(&g)) // standard error is still the front's
	}
	f.ev.Send(events.Event{Error: err.Error(), Kind: sdk.KindOf(err).String(), Stderr: msg, Exit: code})
}

// superviseForFront is `run --detach` started by the front: this process
// becomes the subhost's supervisor. Its plan is made, so bad input in the
// config or pipeline has been reported; the stages' validation follows.
// Its log is held until the boot begins, then written to the
// supervisor's log, with its standard output and error; the front
// returns once the guest's PID 1 runs.
func superviseForFront(ctx context.Context, r *runner.Runner, plan *runner.Plan, t runner.Target, timings bool) error {
	marks := cliMarks
	if !timings {
		marks = nil
	}
	marks.Add("supervisor", "plan made (pipeline, config, plugins found)")
	spec := supervisor.Spec{Settings: g, Target: t, Timings: timings}
	return supervisor.SuperviseDetached(ctx, r, plan, spec, front.ev, marks, front.log)
}
