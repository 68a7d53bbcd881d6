package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/subhost/subhost/internal/state"
)

func newListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the subhosts this host knows of",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			names, err := state.List(g.StateDir)
			if err != nil {
				return err
			}
			reports := []report{}
			unreadable := false
			for _, n := range names {
				r, err := describe(g.StateDir, n)
				if err != nil {
					// One state this build cannot read (a newer
					// schema, a damaged file) must not hide the others.
					unreadableState(n, err)
					unreadable = true
					continue
				}
				r.Stages, r.Config = nil, nil
				reports = append(reports, r)
			}
			if asJSON {
				err = writeJSON(cmd.OutOrStdout(), reports)
			} else {
				err = printList(cmd, reports)
			}
			if err == nil && unreadable {
				return silentError{exitFailed}
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// unreadableState reports, on one line, a subhost whose state cannot be
// read, for commands that go on with the others.
func unreadableState(name string, err error) {
	fmt.Fprintf(os.Stderr, "subhost %s: %v\n", name, err)
}

func printList(cmd *cobra.Command, reports []report) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tUPTIME\tMEMORY\tPIPELINE\tHOME")
	for _, r := range reports {
		pid := "-"
		if r.PID != 0 {
			pid = fmt.Sprint(r.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.State, pid, dash(r.Uptime), memoryColumn(r), r.Pipeline, r.Home)
	}
	return tw.Flush()
}
