package main

import (
	"fmt"
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
			for _, n := range names {
				r, err := describe(g.StateDir, n)
				if err != nil {
					return err
				}
				r.Stages = nil
				reports = append(reports, r)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), reports)
			}
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
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
