package main

import (
	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/supervisor"
)

// newSuperviseCmd is the supervisor process, started by run (see package
// supervisor): its spec comes on standard input.
func newSuperviseCmd() *cobra.Command {
	return &cobra.Command{
		Use:    supervisor.Command + " NAME",
		Hidden: true,
		Args:   exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return supervisor.Main(cmd.Context())
		},
	}
}
