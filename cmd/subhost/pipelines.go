package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

func newPipelinesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pipelines",
		Short: "List the pipelines and their stages",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := g.Pipelines()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, name := range set.Names() {
				p, _ := set.Get(name)
				fmt.Fprintf(w, "%s  (%s)\n", p.Name, p.Source)
				if p.Description != "" {
					fmt.Fprintf(w, "  %s\n", p.Description)
				}
				fmt.Fprintf(w, "  home %s, on exit: %s\n", p.Home, p.OnExit)
				if len(p.Implied) > 0 {
					fmt.Fprintf(w, "  added by subhost: %s (before init: the guest's device policy and limits)\n", strings.Join(p.Implied, ", "))
				}
				for i, s := range p.Stages {
					fmt.Fprintf(w, "  %d. %s", i+1, s.Name)
					if s.Plugin != s.Name {
						fmt.Fprintf(w, " (plugin %s)", s.Plugin)
					}
					keys := make([]string, 0, len(s.Params))
					for k := range s.Params {
						keys = append(keys, k)
					}
					slices.Sort(keys)
					for _, k := range keys {
						fmt.Fprintf(w, " %s=%q", k, s.Params[k])
					}
					fmt.Fprintln(w)
				}
			}
			return nil
		},
	}
}

func completePipelines(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	set, err := g.Pipelines()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	return set.Names(), cobra.ShellCompDirectiveNoFileComp
}
