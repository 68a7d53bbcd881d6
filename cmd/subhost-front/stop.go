package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/bootid"
	"github.com/subhost/subhost/internal/proc"
	"github.com/subhost/subhost/internal/stopreq"
)

// defaultStateRoot is the full CLI's state root when --state-dir is not
// given (state.DefaultRoot, which this program cannot import: package
// state brings the sdk and gRPC; a test holds the two together).
const defaultStateRoot = "/run/subhost"

// stopLine is what the front needs from a plain `subhost stop NAME`.
type stopLine struct {
	root, name string
}

// globalFlags are the full CLI's global flags that take a value. Only
// --state-dir matters to a stop that a supervisor carries out; the others
// are the full CLI's to check when it does the stop itself.
var globalFlags = map[string]bool{
	"--state-dir": true, "--log-dir": true, "--etc-dir": true,
	"--pipeline-file": true, "--plugin-dir": true,
}

// parseStop recognizes `stop NAME` with no flag of its own (no --timeout,
// no --force) and no flag that asks for more output (-v, --log-level):
// the line a service manager, a script or an operator types. Anything
// else is the full CLI's, with every message about what is wrong.
func parseStop(args []string) (stopLine, bool) {
	line := stopLine{root: defaultStateRoot}
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		flag, value, inline := strings.Cut(a, "=")
		switch {
		case globalFlags[flag]:
			if !inline {
				if i+1 == len(args) {
					return line, false
				}
				i++
				value = args[i]
			}
			if flag == "--state-dir" {
				if value == "" {
					return line, false
				}
				line.root = value
			}
		case strings.HasPrefix(a, "-"):
			return line, false
		default:
			positional = append(positional, a)
		}
	}
	if len(positional) != 2 || positional[0] != "stop" || !plainName(positional[1]) {
		return line, false
	}
	line.name = positional[1]
	return line, true
}

// plainName accepts the names sdk.ValidName accepts, or fewer: letters,
// digits, "-" and "_", not first. Only such a name is joined to the state
// root here; the full CLI explains what is wrong with another.
func plainName(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '-' || name[0] == '_' {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// stopSupervised is `subhost stop NAME` for a subhost whose supervisor is
// alive, as the full CLI does it (runner.Stop): leave the request, send
// SIGTERM, wait for the supervisor to power the guest off, take the
// stages down and end. handled is false, with nothing done, when the
// full CLI must do the stop: no state, a state from before the host's
// reboot or without a boot ID, no living supervisor recorded. It is
// false too when the supervisor ended but left the state behind (a
// Down that failed, or a supervisor killed half way): the full CLI takes
// the lock and brings down what is left, as it would have.
func stopSupervised(line stopLine) (code int, handled bool) {
	dir := filepath.Join(line.root, line.name)
	st, err := stopreq.ReadSupervised(filepath.Join(dir, "state.json"))
	if err != nil || st.Supervisor == 0 || st.BootID == "" || st.BootID != bootid.Current() {
		return 0, false
	}
	sup, err := proc.Open(st.Supervisor, st.SupervisorStartTime)
	if err != nil {
		return 0, false
	}
	defer sup.Close()
	if err := stopreq.Write(dir, stopreq.Request{}); err != nil {
		return 0, false
	}
	if err := sup.Signal(unix.SIGTERM); err != nil {
		// It ended meanwhile: what it left, and our request, are the
		// full CLI's to deal with.
		return 0, false
	}
	wait := stopreq.SupervisorWait(0, false, st.Record.GuestStopTimeoutMS)
	switch exited, stopped := stopreq.Await(sup, wait); {
	case stopped:
		fmt.Fprintf(os.Stderr, "subhost: %v\n", stopreq.StoppedError(line.name, st.Supervisor))
		return 1, true
	case !exited:
		fmt.Fprintf(os.Stderr, "subhost: %v\n", stopreq.NotFinishedError(line.name, st.Supervisor, wait))
		return 1, true
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); !errors.Is(err, fs.ErrNotExist) {
		return 0, false
	}
	fmt.Printf("subhost %s stopped\n", line.name)
	return 0, true
}
