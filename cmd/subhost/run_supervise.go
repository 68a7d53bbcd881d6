package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/autostart"
	"github.com/subhost/subhost/internal/cgroups"
	"github.com/subhost/subhost/internal/guestexit"
	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/internal/sdnotify"
	"github.com/subhost/subhost/internal/settings"
	"github.com/subhost/subhost/internal/supervisor"
)

// runSupervised is `run --supervise`: this process, in the foreground, is
// the guest's supervisor, for a service manager (systemd's Type=notify,
// start-stop-daemon, runit, a scheduler's exec driver). The console is
// not relayed: it goes to the console log. READY=1 goes to $NOTIFY_SOCKET
// once the guest's PID 1 runs; SIGTERM (the context) is an orderly stop:
// power off, then the pipeline's teardown, and exit 0. A guest that
// crashed (and was not restarted) makes the exit status 1.
//
// Under a systemd unit with Delegate=yes (cgroups.FindDelegation), the
// supervisor moves itself into the leaf cgroup <unit>/supervisor and the
// guest's cgroups go below the unit's: systemd then accounts the guest
// to the unit and, should the supervisor itself be killed, kills and
// removes the guest's cgroups with the unit's.
func runSupervised(ctx context.Context, t runner.Target) error {
	s, err := delegatedSettings(t.Name)
	if err != nil {
		return err
	}
	n := &serviceNotifier{name: t.Name}
	err = supervisor.Supervise(ctx, supervisor.Spec{Settings: s, Target: t}, supervisor.NewEventWriter(n), nil)
	if err != nil {
		return err
	}
	last := n.lastEvent()
	if last.Guest == guestexit.Crashed.String() && ctx.Err() == nil {
		return fmt.Errorf("subhost %s: the guest crashed; it is %s (console log: %s)", t.Name, last.Status, g.ConsoleLog(t.Name))
	}
	return nil
}

// delegatedSettings are the global settings, with the cgroup parent when
// a service manager delegated this process's cgroup (then this process
// has moved into its leaf). Started by systemd, it says on standard
// error (the unit's log) where the guest's cgroups go, and why.
func delegatedSettings(name string) (settings.Settings, error) {
	s := g
	parent, why := cgroups.FindDelegation(os.Getenv)
	if parent == "" {
		if os.Getenv("INVOCATION_ID") != "" || os.Getenv("NOTIFY_SOCKET") != "" {
			fmt.Fprintf(os.Stderr, "subhost %s: the guest's cgroups go to their fixed place, %s/%s in each hierarchy: %s\n", name, cgroups.Dir, name, why)
		}
		return s, nil
	}
	if err := cgroups.EnterLeaf(parent); err != nil {
		return s, fmt.Errorf("delegated cgroup %s: %w", parent, err)
	}
	s.CgroupParent = parent
	fmt.Fprintf(os.Stderr, "subhost %s: the guest's cgroups go below this unit's delegated cgroup %s (the supervisor is in %s/%s)\n", name, parent, parent, cgroups.Leaf)
	return s, nil
}

// enrolledDefaults takes the pipeline and home of an enrolled subhost
// (subhost enable) when the command line does not give them, so that
// subhost@NAME.service needs nothing but the name. Only a subhost that is
// not enrolled boots with the defaults: an enrolment that cannot be read
// is an error (FILE:LINE, as autostart start reports it), since the
// defaults may name another home and boot another subhost under the name.
func enrolledDefaults(cmd *cobra.Command, t *targetFlags, name string) error {
	e, err := autostartDir().Get(name)
	if errors.Is(err, autostart.ErrNotEnrolled) {
		return nil
	}
	if err != nil {
		return err
	}
	if !cmd.Flags().Changed("pipeline") && e.Pipeline != "" {
		t.pipeline = e.Pipeline
	}
	if !cmd.Flags().Changed("home") && e.Home != "" {
		t.home = e.Home
	}
	return nil
}

// serviceNotifier reads the supervisor's events: progress to standard
// error (the service's log), readiness and the end to the service manager.
type serviceNotifier struct {
	name string
	mu   sync.Mutex
	last supervisor.Event
}

func (n *serviceNotifier) Write(p []byte) (int, error) {
	var e supervisor.Event
	if err := json.Unmarshal(p, &e); err != nil {
		return len(p), nil
	}
	n.mu.Lock()
	if e.Guest != "" || e.Status != "" || e.Error != "" {
		n.last = e
	}
	n.mu.Unlock()
	switch {
	case e.Progress != "":
		fmt.Fprint(os.Stderr, e.Progress)
	case e.Ready:
		status := fmt.Sprintf("STATUS=subhost %s running, guest pid %d", n.name, e.PID)
		if e.PID == 0 {
			status = fmt.Sprintf("STATUS=subhost %s is %s", n.name, e.Status)
		}
		n.notify("READY=1", fmt.Sprintf("MAINPID=%d", os.Getpid()), status)
		fmt.Fprintln(os.Stderr, status[len("STATUS="):])
	case e.Guest != "":
		n.notify("STOPPING=1", fmt.Sprintf("STATUS=subhost %s: guest %s; %s", n.name, e.Guest, e.Status))
		fmt.Fprintf(os.Stderr, "subhost %s: guest %s; %s\n", n.name, e.Guest, e.Status)
	}
	return len(p), nil
}

func (n *serviceNotifier) notify(lines ...string) {
	if _, err := sdnotify.Notify(lines...); err != nil {
		fmt.Fprintf(os.Stderr, "subhost: %v\n", err)
	}
}

func (n *serviceNotifier) lastEvent() supervisor.Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.last
}
