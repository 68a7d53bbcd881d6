package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/cgroups"
	"github.com/subhost/subhost/internal/proc"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/sdk"
)

// report is one subhost as status and list show it.
type report struct {
	Name       string `json:"name"`
	Pipeline   string `json:"pipeline,omitempty"`
	State      string `json:"state"`
	PID        int    `json:"pid,omitempty"`
	Started    string `json:"started,omitempty"` // the guest's start, RFC 3339 with nanoseconds
	Uptime     string `json:"uptime,omitempty"`
	UptimeS    int64  `json:"uptime_s,omitempty"`
	Home       string `json:"home,omitempty"`
	Supervisor int    `json:"supervisor,omitempty"`
	Error      string `json:"error,omitempty"`
	// Note says why the state is not what the recorded status says:
	// a state left over from before the host rebooted.
	Note string `json:"note,omitempty"`
	// Restarts counts the guest's restarts by RESTART= since the
	// subhost was brought up.
	Restarts  int              `json:"restarts"`
	Autostart *autostartReport `json:"autostart,omitempty"`
	Stages    []stageReport    `json:"stages,omitempty"`
	// Config is the config as read when the subhost was brought up: it
	// runs with that until it is stopped, whatever the file says now, so
	// a tool that writes configs (the Ansible module) compares the two to
	// know that a restart is due, even one it did not ask for itself.
	// status only: list leaves it out, as it leaves out the stages.
	Config *bootConfig `json:"config,omitempty"`
	// Extra is the boot record's site map: what site stages (an exec
	// stage's script) contributed.
	Extra map[string]string `json:"extra,omitempty"`
	// Limits and Usage are read from the recorded cgroups while they
	// exist.
	Limits *cgroups.InForce `json:"limits,omitempty"`
	Usage  *cgroups.Usage   `json:"usage,omitempty"`
	// Userns is the guest's host id range; null for a privileged guest.
	Userns *idRange `json:"userns"`
}

// bootConfig is the config a subhost was brought up with, shaped as
// `subhost config --json` shows a file: the file it came from ("" when
// none) and its variables (DISKS and BRIDGES taken from the environment
// have the origin "environment").
type bootConfig struct {
	File string             `json:"file,omitempty"`
	Vars map[string]sdk.Var `json:"vars"`
}

type idRange struct {
	Base uint32 `json:"base"`
	Size uint32 `json:"size"`
}

// privilege says in words who the guest's root is.
func (r report) privilege() string {
	if r.Userns == nil {
		return "privileged (guest uid 0 = host uid 0)"
	}
	return fmt.Sprintf("unprivileged (guest uid 0 = host uid %d)", r.Userns.Base)
}

// autostartReport is a subhost's enrolment, when it has one.
type autostartReport struct {
	Order int    `json:"order"`
	Group string `json:"group,omitempty"`
}

// startedFormat is RFC 3339 with all nine digits of the nanoseconds, so
// that the strings sort as the times do (RFC3339Nano drops trailing zeros).
const startedFormat = "2006-01-02T15:04:05.000000000Z07:00"

type stageReport struct {
	Name       string `json:"name"`
	Plugin     string `json:"plugin"`
	Status     string `json:"status"`
	DurationMS int64  `json:"duration_ms,omitempty"`
	Error      string `json:"error,omitempty"`
}

// describe reads a subhost's state and checks it against the living
// processes: a state that says running over a dead guest is a failure.
func describe(root, name string) (report, error) {
	r, err := describeState(root, name)
	if err == nil {
		if e, err := autostartDir().Get(name); err == nil {
			r.Autostart = &autostartReport{Order: e.Order, Group: e.Group}
		}
	}
	return r, err
}

func describeState(root, name string) (report, error) {
	st, err := state.Dir{Root: root, Name: name}.Load()
	return reportOf(root, name, st, err)
}

// reportOf is describeState's report from a state already loaded (st and
// err as state.Dir.Load returned them), for a caller that needs the
// state itself too.
func reportOf(root, name string, st *state.State, err error) (report, error) {
	if errors.Is(err, state.ErrNoState) {
		return report{Name: name, State: state.Stopped}, nil
	}
	if err != nil {
		return report{}, err
	}
	r := report{Name: name, Pipeline: st.Pipeline, State: st.Status, Home: st.Home, Error: st.Error, Extra: st.Record.Extra, Restarts: st.Restarts}
	r.Config = &bootConfig{File: st.Subhost.ConfigFile, Vars: st.Subhost.Vars}
	if r.Config.Vars == nil {
		r.Config.Vars = map[string]sdk.Var{}
	}
	if st.Record.UsernsSize != 0 {
		r.Userns = &idRange{Base: st.Record.UsernsBase, Size: st.Record.UsernsSize}
	}
	if st.FromEarlierBoot {
		// Nothing it records exists since the host rebooted (where /run
		// is not a tmpfs, its state survives the reboot): stopped, as
		// it would be on a tmpfs. stop clears it, run boots it afresh.
		r.State, r.Error = state.Stopped, ""
		r.Note = "its state is left over from before the host rebooted; nothing of it runs: `subhost stop " + name + "` clears it, `subhost run` boots it afresh"
		return r, nil
	}
	guest := st.Record.GuestPID != 0 && proc.Alive(st.Record.GuestPID, st.Record.GuestStartTime)
	if guest {
		r.PID = st.Record.GuestPID
		if !st.GuestStarted.IsZero() {
			r.Started = st.GuestStarted.UTC().Format(startedFormat)
			up := time.Since(st.GuestStarted).Truncate(time.Second)
			r.Uptime, r.UptimeS = up.String(), int64(up.Seconds())
		}
	}
	if st.Supervisor != 0 && proc.Alive(st.Supervisor, st.SupervisorStartTime) {
		r.Supervisor = st.Supervisor
	}
	if st.Status == state.Running && st.Record.GuestPID != 0 && !guest {
		r.State = state.Failed
		if r.Error == "" {
			r.Error = "the guest is gone but its stages are up: run `subhost stop " + name + "`"
		}
	}
	// A boot or a stop whose process was killed (say, by the OOM killer)
	// left its state saying so; nobody holds the lock any more, and no
	// supervisor is alive to take it back.
	if (st.Status == state.Booting || st.Status == state.Stopping) && r.Supervisor == 0 {
		if _, busy := (state.Dir{Root: root, Name: name}).Busy(); !busy {
			verb := map[string]string{state.Booting: "boot", state.Stopping: "stop"}[st.Status]
			r.State = state.Failed
			if r.Error == "" {
				r.Error = "its " + verb + " was interrupted (the process ended half way): run `subhost stop " + name + "`"
			}
		}
	}
	if len(st.Record.Cgroups) > 0 && cgroupsExist(st.Record.Cgroups) {
		l, u := cgroups.ReadInForce(st.Record.Cgroups), cgroups.ReadUsage(st.Record.Cgroups)
		r.Limits, r.Usage = &l, &u
	}
	for _, s := range st.Stages {
		r.Stages = append(r.Stages, stageReport{Name: s.Name, Plugin: s.Plugin, Status: s.Status, DurationMS: s.DurationMS, Error: s.Error})
	}
	return r, nil
}

func newStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "status [--json] NAME",
		Short:             "Show a subhost's state, guest PID, uptime and stages",
		Args:              exactArgs(1, "NAME"),
		ValidArgsFunction: completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sdk.ValidName(args[0]); err != nil {
				return err
			}
			r, err := describe(g.StateDir, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s: %s", r.Name, r.State)
			if r.PID != 0 {
				fmt.Fprintf(w, " (pid %d, up %s)", r.PID, r.Uptime)
			}
			fmt.Fprintln(w)
			if r.Pipeline != "" {
				fmt.Fprintf(w, "  pipeline %s, home %s\n", r.Pipeline, r.Home)
				fmt.Fprintf(w, "  %s\n", r.privilege())
			}
			if r.Started != "" {
				fmt.Fprintf(w, "  guest started %s\n", r.Started)
			}
			if r.Restarts > 0 {
				fmt.Fprintf(w, "  restarted %d time(s) by RESTART=\n", r.Restarts)
			}
			if a := r.Autostart; a != nil {
				fmt.Fprintf(w, "  autostart: order %d", a.Order)
				if a.Group != "" {
					fmt.Fprintf(w, ", group %s", a.Group)
				}
				fmt.Fprintln(w)
			}
			for _, s := range r.Stages {
				fmt.Fprintf(w, "  %-16s %s", s.Name, s.Status)
				if s.Error != "" {
					fmt.Fprintf(w, ": %s", s.Error)
				}
				fmt.Fprintln(w)
			}
			for _, k := range slices.Sorted(maps.Keys(r.Extra)) {
				fmt.Fprintf(w, "  extra %s = %q\n", printable(k), r.Extra[k])
			}
			writeResources(w, r)
			if r.Error != "" {
				fmt.Fprintf(w, "  error: %s\n", r.Error)
			}
			if r.Note != "" {
				fmt.Fprintf(w, "  note: %s\n", r.Note)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(out))
	return err
}

func completeNames(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names, _ := state.List(g.StateDir)
	return names, cobra.ShellCompDirectiveNoFileComp
}

// printable is s, quoted when it has a character that is not printable:
// a site stage's extra key with a line break or an escape sequence must
// not forge what an operator reads.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
