package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/subhost/subhost/internal/version"
	"github.com/subhost/subhost/sdk"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print subhost's version and stage protocol version",
		Args:  exactArgs(0, "no arguments"),
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "subhost %s (stage protocol v%d)\n", version.Version, sdk.ProtocolVersion)
		},
	}
}
