package runner

import (
	"context"

	"github.com/subhost/subhost/sdk"
)

// Stages yields the stages a pipeline names. In production it is the
// plugin host, which finds each stage's executable and starts it as a
// go-plugin process; the runner's own tests give it stages in-process.
type Stages interface {
	// Resolve finds what serves a pipeline's plugin name: a path, or any
	// string that names it in messages and in the state.
	Resolve(plugin string) (string, error)
	// Start starts the stage served by path; pin, when set, is the sha256
	// the pipeline requires of it.
	Start(ctx context.Context, stage, path, pin string) (Instance, error)
}

// Instance is one started stage.
type Instance interface {
	Stage() sdk.Stage
	// Path names what serves it, for messages.
	Path() string
	// Exited reports whether it has died (a crashed plugin).
	Exited() bool
	// Kill ends it, and waits until it is gone.
	Kill()
}
