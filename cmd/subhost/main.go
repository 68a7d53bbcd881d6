// Command subhost runs sandboxed services directly on Linux hosts: it boots
// a subhost "almost as if in a VM" through a pipeline of stage plugins.
// Installed under the names pretend-boot and control it behaves as the
// shell scripts of those names did.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/subhost/subhost/internal/timeline"
	"github.com/subhost/subhost/sdk"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailed   = 1 // the operation failed
	exitBadInput = 2 // usage or bad input; nothing was changed
)

// usageError marks errors in how subhost was called.
type usageError struct{ error }

func main() {
	os.Exit(run(os.Args))
}

func run(args []string) int {
	cliMarks.AddAt(timeline.ProcessStart(), "cli", "exec (estimate: less its CPU time so far)")
	cliMarks.Add("cli", "main")
	root := newRootCmd()
	root.SetArgs(compatArgs(filepath.Base(args[0]), args[1:]))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var silent silentError
	if !errors.As(err, &silent) {
		fmt.Fprintf(os.Stderr, "subhost: %s\n", err)
	}
	var usage usageError
	switch {
	case errors.As(err, &usage):
		if cmd != nil {
			fmt.Fprintf(os.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return exitBadInput
	case errors.As(err, &silent):
		return silent.code
	case sdk.IsKind(err, sdk.KindInvalidConfig):
		return exitBadInput
	default:
		return exitFailed
	}
}

// silentError carries an exit code for an error already reported.
type silentError struct{ code int }

func (e silentError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// compatArgs maps the old scripts' command lines onto subhost's:
// `pretend-boot NAME` and `control start|stop NAME`.
func compatArgs(argv0 string, args []string) []string {
	switch argv0 {
	case "pretend-boot":
		return append([]string{"run", "--pipeline", "pretend-boot"}, args...)
	case "control":
		if len(args) > 0 {
			switch args[0] {
			case "start":
				return append([]string{"run", "--pipeline", "control"}, args[1:]...)
			case "stop":
				return append([]string{"stop"}, args[1:]...)
			}
		}
		return append([]string{"control-usage"}, args...)
	}
	return args
}
