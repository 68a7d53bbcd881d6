package main

import "strings"

// detachedRun is what the front needs from a `subhost run --detach`
// command line; the full CLI parses the whole of it again.
type detachedRun struct {
	name    string
	timings bool
}

// valueFlags are the full CLI's flags, global and run's, that take a
// value: the front must skip the value to find the positional arguments.
var valueFlags = map[string]bool{
	"--plugin-dir": true, "--pipeline-file": true, "--log-level": true,
	"--state-dir": true, "--etc-dir": true, "--log-dir": true,
	"--pipeline": true, "-p": true, "--home": true, "--config": true,
}

// parseDetachedRun recognizes `run --detach NAME` with the flags it
// knows, anywhere on the line as cobra takes them. Anything else (another
// command, --help, a flag it does not know, a shorthand it does not
// expect) is not for the front: the full CLI gets the line, and with it
// every message about what is wrong with it.
func parseDetachedRun(args []string) (detachedRun, bool) {
	var run detachedRun
	var positional []string
	detach := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--detach" || a == "-d":
			detach = true
		case a == "--timings":
			run.timings = true
		case a == "--verbose" || a == "-v" || a == "-vv" || a == "-vvv":
		case valueFlags[a]:
			if i+1 == len(args) {
				return run, false
			}
			i++
		case strings.HasPrefix(a, "--") && strings.Contains(a, "=") && valueFlags[a[:strings.Index(a, "=")]]:
		case strings.HasPrefix(a, "-"):
			return run, false
		default:
			positional = append(positional, a)
		}
	}
	if !detach || len(positional) != 2 || positional[0] != "run" {
		return run, false
	}
	run.name = positional[1]
	return run, true
}
