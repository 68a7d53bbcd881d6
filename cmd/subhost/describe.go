package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/pluginhost"
	"github.com/subhost/subhost/sdk"
)

func newDescribeCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "describe [--json] PLUGIN",
		Short: "Show what a stage plugin accepts: its parameters and the config variables it reads",
		Long: `Start a stage plugin and show what it says of itself: its version and
summary, the parameters its pipeline block accepts, and the variables of a
subhost's config that it reads. This is where a config variable is
documented: by the stage that handles it.`,
		Args: exactArgs(1, "PLUGIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, err := g.PluginHost(g.Logger())
			if err != nil {
				return err
			}
			path, err := pluginhost.Resolve(host.Dirs, args[0])
			if err != nil {
				return usageError{err}
			}
			desc, sum, err := describePlugin(cmd.Context(), host, args[0], path)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(w, desc)
			}
			fmt.Fprintf(w, "%s %s: %s\n%s (sha256 %s)\n", desc.Name, desc.Version, desc.Summary, path, sum)
			fmt.Fprintln(w, recordUseLine(desc.Record))
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			if len(desc.Params) > 0 {
				fmt.Fprintln(tw, "\nPARAMETER\tDEFAULT\tMEANING")
				for _, p := range desc.Params {
					def := dash(p.Default)
					if p.Required {
						def = "(required)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, def, p.Doc)
				}
			}
			if len(desc.Vars) > 0 {
				fmt.Fprintln(tw, "\nCONFIG VARIABLE\tDEFAULT\tMEANING")
				for _, v := range desc.Vars {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, dash(v.Default), v.Doc)
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the description as JSON")
	return cmd
}

// recordUseLine says how a stage's Up uses the boot record, and so what
// it runs beside in a boot.
func recordUseLine(u *sdk.RecordUse) string {
	if u == nil {
		return "boot record: declares no use, so its Up runs alone"
	}
	list := func(fs []string) string {
		if len(fs) == 0 {
			return "nothing"
		}
		return strings.Join(fs, ", ")
	}
	return fmt.Sprintf("boot record: reads %s; sets %s", list(u.Reads), list(u.Writes))
}
