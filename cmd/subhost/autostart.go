package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/autostart"
	"github.com/subhost/subhost/internal/state"
)

func newAutostartCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "autostart",
		Short: "Start the enrolled subhosts in order, stop every subhost in reverse",
		Long: `The host's boot and shutdown of subhosts, run by /etc/init.d/subhost or
subhost.service: ` + "`autostart start`" + ` starts the subhosts enrolled with
` + "`subhost enable`" + `, ` + "`autostart stop`" + ` stops every running one.`,
		Args: exactArgs(0, "a subcommand (list, status, start, stop)"),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAutostartListCmd(), newAutostartStatusCmd(), newAutostartStartCmd(), newAutostartStopCmd())
	return cmd
}

// enrolled lists the enrolments, reporting (to stderr) the files that are
// not valid; bad is true when there were any.
func enrolled() (entries []autostart.Entry, bad bool) {
	entries, errs := autostartDir().List()
	for _, err := range errs {
		fmt.Fprintf(os.Stderr, "subhost: %s\n", err)
	}
	return entries, len(errs) > 0
}

// upStates are the states `autostart start` leaves alone and `autostart
// stop` stops.
func isUp(st string) bool {
	switch st {
	case state.Running, state.Hibernating, state.Booting, state.Stopping:
		return true
	}
	return false
}

type enrolledReport struct {
	Name     string `json:"name"`
	Order    int    `json:"order"`
	Group    string `json:"group,omitempty"`
	Delay    string `json:"delay,omitempty"`
	Pipeline string `json:"pipeline,omitempty"`
	Home     string `json:"home,omitempty"`
	State    string `json:"state"`
}

// enrolledReports describes each enrolled subhost. One whose state cannot
// be read is reported on standard error and left out, so that it does
// not hide the others; unreadable says there was one.
func enrolledReports(entries []autostart.Entry) (out []enrolledReport, unreadable bool) {
	out = []enrolledReport{}
	for _, e := range entries {
		r, err := describe(g.StateDir, e.Name)
		if err != nil {
			unreadableState(e.Name, err)
			unreadable = true
			continue
		}
		er := enrolledReport{Name: e.Name, Order: e.Order, Group: e.Group, Pipeline: e.Pipeline, Home: e.Home, State: r.State}
		if e.Delay != 0 {
			er.Delay = e.Delay.String()
		}
		out = append(out, er)
	}
	return out, unreadable
}

func printEnrolled(cmd *cobra.Command, reports []enrolledReport) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tORDER\tGROUP\tDELAY\tSTATE\tPIPELINE\tHOME")
	for _, r := range reports {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Order, dash(r.Group), dash(r.Delay), r.State, dash(r.Pipeline), dash(r.Home))
	}
	return tw.Flush()
}

func newAutostartListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the enrolled subhosts in start order, with their state",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			entries, bad := enrolled()
			reports, unreadable := enrolledReports(entries)
			var err error
			if asJSON {
				err = writeJSON(cmd.OutOrStdout(), reports)
			} else {
				err = printEnrolled(cmd, reports)
			}
			switch {
			case err != nil:
				return err
			case unreadable:
				return silentError{exitFailed}
			case bad:
				return silentError{exitBadInput}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// LSB init script status codes.
const (
	lsbRunning    = 0
	lsbNotRunning = 3
	lsbUnknown    = 4
)

func newAutostartStatusCmd() *cobra.Command {
	var group string
	cmd := &cobra.Command{
		Use:   "status [--group G]",
		Short: "List the enrolled subhosts; exit 0 when all run, 3 when one does not, 4 when unknown (LSB)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			entries, bad := enrolled()
			if group != "" {
				var in []autostart.Entry
				for _, e := range entries {
					if e.Group == group {
						in = append(in, e)
					}
				}
				entries = in
			}
			reports, unreadable := enrolledReports(entries)
			if err := printEnrolled(cmd, reports); err != nil {
				return err
			}
			if unreadable {
				// Whether it runs is not known: LSB's "status unknown".
				return silentError{lsbUnknown}
			}
			if bad {
				return silentError{exitBadInput}
			}
			for _, r := range reports {
				if r.State != state.Running {
					return silentError{lsbNotRunning}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&group, "group", "", "only the subhosts of this group")
	return cmd
}
