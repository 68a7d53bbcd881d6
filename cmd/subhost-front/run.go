package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/supervisor/events"
	"github.com/subhost/subhost/internal/timeline"
)

// runDetached is `subhost run --detach`: it starts the full CLI as the
// subhost's supervisor, in a session of its own, and relays its reports
// until the guest's PID 1 runs or the boot fails; it returns the exit
// status, the full CLI's own for a failure.
func runDetached(cli string, run detachedRun, marks *timeline.Recorder) int {
	evR, evW, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "subhost: %v\n", err)
		return 1
	}
	defer evR.Close()
	cmd := exec.Command(cli, append([]string{events.FDFlag + "=3"}, os.Args[1:]...)...)
	cmd.Args[0] = os.Args[0] // for ps: the command the user typed
	// This standard error until the CLI's boot begins and it turns its
	// own to the supervisor's log: a crash before that is seen here.
	// (Its standard output, nothing writes to.)
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{evW} // fd 3
	// Its own session: neither the terminal's signals nor the end of this
	// process reach the supervisor.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Until the guest runs, an interrupt here is an interrupt of the boot:
	// it is passed on (one that comes while the CLI starts, as soon as it
	// has), and the supervisor rolls back.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	marks.Add("cli", "start supervisor")
	err = cmd.Start()
	evW.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "subhost: start %s: %v\n", cli, err)
		return 1
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()

	progress := isTerminal(os.Stderr)
	rd := events.NewReader(evR)
	for e, ok := rd.Next(); ok; e, ok = rd.Next() {
		switch {
		case e.Progress != "":
			if progress {
				fmt.Fprint(os.Stderr, e.Progress)
			}
		case e.Error != "" || e.Exit != 0:
			cmd.Wait()
			fmt.Fprint(os.Stderr, e.Stderr)
			if e.Exit == 0 {
				return 1
			}
			return e.Exit
		case e.Ready:
			marks.Add("cli", "supervisor reports the guest running")
			signal.Stop(sigs)
			if e.PID == 0 {
				cmd.Wait()
				fmt.Printf("subhost %s is %s (its pipeline launches no guest)\n", run.name, e.Status)
				return 0
			}
			if run.timings {
				printTimeline(rd, marks)
			}
			cmd.Process.Release()
			fmt.Printf("subhost %s running (guest pid %d); console: subhost console %s\n", run.name, e.PID, run.name)
			return 0
		}
	}
	err = cmd.Wait()
	if rd.Log == "" {
		// It wrote here until it would have opened its log.
		fmt.Fprintf(os.Stderr, "subhost: subhost %s: the supervisor ended before the guest ran (%v), before it opened its log: what it wrote is above\n", run.name, err)
	} else {
		fmt.Fprintf(os.Stderr, "subhost: subhost %s: the supervisor ended before the guest ran (%v); see %s\n", run.name, err, rd.Log)
	}
	return 1
}

// printTimeline waits for the supervisor's part of the timeline and prints
// the whole of it on standard error, as the full CLI does.
func printTimeline(rd *events.Reader, marks *timeline.Recorder) {
	for e, ok := rd.Next(); ok; e, ok = rd.Next() {
		if e.Timeline != nil {
			marks.Merge(e.Timeline)
			break
		}
	}
	fmt.Fprintln(os.Stderr, "boot timeline:")
	timeline.Write(os.Stderr, marks.Marks())
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
