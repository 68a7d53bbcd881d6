// Command subhost-front is the program installed as subhost. It is small
// (standard library only, about 2 MB, static) because `subhost run
// --detach` is how guests are booted, and a boot should not wait for a
// heavy Go process to start, make a plan, start another heavy process to
// supervise and then wait through the boot beside it. For that command
// the front starts the full CLI (subhost-cli, installed with the plugins)
// as the supervisor, passing it a pipe for its reports; the CLI makes the
// plan, reports bad input with nothing written, and otherwise becomes the
// supervisor (cmd/subhost: run_front.go). A plain `subhost stop NAME` of
// a subhost whose supervisor is alive it does itself (stop.go): it only
// asks the supervisor and waits. For every other command line, and such
// a stop that the supervisor cannot carry out, the front executes the
// full CLI in its place.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/subhost/subhost/internal/timeline"
)

func main() {
	marks := timeline.New()
	marks.AddAt(timeline.ProcessStart(), "cli", "exec (estimate: less its CPU time so far)")
	marks.Add("cli", "main")
	cli, err := locateCLI()
	if err != nil {
		fmt.Fprintf(os.Stderr, "subhost: %v\n", err)
		os.Exit(1)
	}
	// The old scripts' names (pretend-boot, control) are the full CLI's
	// to translate.
	argv0 := filepath.Base(os.Args[0])
	if argv0 != "pretend-boot" && argv0 != "control" {
		if run, ok := parseDetachedRun(os.Args[1:]); ok {
			os.Exit(runDetached(cli, run, marks))
		}
		if line, ok := parseStop(os.Args[1:]); ok {
			if code, handled := stopSupervised(line); handled {
				os.Exit(code)
			}
		}
	}
	err = syscall.Exec(cli, os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "subhost: execute %s: %v\n", cli, err)
	os.Exit(1)
}
