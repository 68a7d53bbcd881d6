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
	ev     *events.Writer
	logged bool // standard output and error are the supervisor's log
}

// end reports the error that ends this process: to the front, which
// writes msg on its standard error and exits with code, and to the
// supervisor's log once there is one.
func (f *frontReport) end(err error, msg string, code int) {
	f.ev.Send(events.Event{Error: err.Error(), Kind: sdk.KindOf(err).String(), Stderr: msg, Exit: code})
	if f.logged {
		fmt.Fprint(os.Stderr, msg)
	}
}

// superviseForFront is `run --detach` started by the front: this process
// becomes the subhost's supervisor. Its plan is made, so bad input has
// been reported with nothing written; from here on its output goes to the
// supervisor's log, and the front returns once the guest's PID 1 runs.
func superviseForFront(ctx context.Context, r *runner.Runner, plan *runner.Plan, t runner.Target, timings bool) error {
	marks := cliMarks
	if !timings {
		marks = nil
	}
	marks.Add("supervisor", "plan made (pipeline, config, plugins found)")
	log, err := supervisor.RedirectToLog(&g, t.Name)
	if err != nil {
		return err
	}
	front.logged = true
	front.ev.Send(events.Event{Log: log})
	spec := supervisor.Spec{Settings: g, Target: t, Timings: timings}
	return supervisor.SuperviseDetached(ctx, r, plan, spec, front.ev, marks)
}
