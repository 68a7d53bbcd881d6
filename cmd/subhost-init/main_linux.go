package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("subhost-init", flag.ContinueOnError)
	mode := fs.String("mode", "sysv", "sysv: run the guest's rcS and rc 2 until shutdown; shell: run an interactive shell as the console session")
	shell := fs.String("shell", "/bin/bash", "shell for mode shell (falls back to /bin/sh when missing in the guest)")
	timeout := fs.Duration("shutdown-timeout", 30*time.Second, "how long the whole shutdown may take: /etc/init.d/rc 0 (or 6), then SIGTERM and SIGKILL to every process")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(os.Stderr, "subhost-init: unexpected argument %q\n", fs.Arg(0))
		return 2
	case *mode != "sysv" && *mode != "shell":
		fmt.Fprintf(os.Stderr, "subhost-init: --mode %q: want sysv or shell\n", *mode)
		return 2
	case *timeout <= 0:
		fmt.Fprintf(os.Stderr, "subhost-init: --shutdown-timeout %v: must be positive\n", *timeout)
		return 2
	}
	// Run by mistake on the host (or inside a guest, to mimic telinit)
	// it must do nothing: killing every process and calling reboot(2)
	// are only sane for the PID 1 of a subhost's own PID namespace.
	if pid := os.Getpid(); pid != 1 {
		fmt.Fprintf(os.Stderr, "subhost-init: must run as PID 1 of a subhost's PID namespace (this is PID %d); doing nothing\n", pid)
		return 2
	}
	reserveThreads()
	p := newPID1(*timeout)
	runOnOneCPU()
	if *mode == "shell" {
		return p.shellMode(*shell)
	}
	return p.sysvMode()
}
