package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/autostart"
)

func newDisableCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "disable NAME",
		Short: "Withdraw a subhost from the autostart (a running one runs on)",
		Args:  exactArgs(1, "NAME"),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			entries, _ := autostartDir().List()
			var names []string
			for _, e := range entries {
				names = append(names, e.Name)
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			err := autostartDir().Disable(args[0])
			if errors.Is(err, autostart.ErrNotEnrolled) {
				fmt.Fprintf(cmd.OutOrStdout(), "subhost %s was not enabled\n", args[0])
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "subhost %s disabled\n", args[0])
			return nil
		},
	}
}
