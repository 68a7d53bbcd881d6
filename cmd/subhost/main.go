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
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/supervisor"
	"github.com/subhost/subhost/internal/supervisor/events"
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
	argv0, args := filepath.Base(args[0]), args[1:]
	who := "cli"
	if len(args) > 0 && strings.HasPrefix(args[0], events.FDFlag+"=") {
		// Started by the front (cmd/subhost-front) to be the supervisor.
		fd, err := strconv.Atoi(strings.TrimPrefix(args[0], events.FDFlag+"="))
		if err != nil || fd < 3 {
			fmt.Fprintf(os.Stderr, "subhost: %s: want a descriptor number above 2\n", args[0])
			return exitBadInput
		}
		// Neither the plugins nor the guest nor subhost-monitor, which
		// this process becomes, are the front's to report to.
		syscall.CloseOnExec(fd)
		front = &frontReport{ev: events.NewWriter(os.NewFile(uintptr(fd), "events")), log: supervisor.NewPendingLog()}
		g.LogOutput = front.log
		args, who = args[1:], "supervisor"
	}
	cliMarks.AddAt(timeline.ProcessStart(), who, "exec (estimate: less its CPU time so far)")
	cliMarks.Add(who, "main")
	root := newRootCmd()
	root.SetArgs(compatArgs(argv0, args))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	msg, code := failure(cmd, err)
	if front != nil {
		front.end(err, msg, code)
	} else {
		fmt.Fprint(os.Stderr, msg)
	}
	return code
}

// failure is what subhost writes on standard error for err, which ended
// cmd, and its exit status.
func failure(cmd *cobra.Command, err error) (msg string, code int) {
	var silent silentError
	if !errors.As(err, &silent) {
		msg = fmt.Sprintf("subhost: %s\n", err)
	}
	word, unknown := unknownCommand(err)
	if unknown && cmd != nil {
		// cobra's own suggestions take three lines more (the root
		// disables them); here they end the one line.
		if s := cmd.SuggestionsFor(word); len(s) > 0 {
			msg = fmt.Sprintf("subhost: unknown command %q; did you mean %s?\n", word, strings.Join(s, " or "))
		}
	}
	var usage usageError
	switch {
	case errors.As(err, &usage) || unknown:
		if cmd != nil {
			msg += fmt.Sprintf("Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return msg, exitBadInput
	case errors.As(err, &silent):
		return msg, silent.code
	case sdk.IsKind(err, sdk.KindInvalidConfig):
		return msg, exitBadInput
	default:
		return msg, exitFailed
	}
}

// unknownCommand reports cobra's error for a command line whose first
// word is no command, which cobra gives as a plain error (a usage error
// like any other here), and that word.
func unknownCommand(err error) (string, bool) {
	var word string
	_, serr := fmt.Sscanf(err.Error(), "unknown command %q", &word)
	return word, serr == nil
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
