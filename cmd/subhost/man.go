package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd writes one man page per command, in section 8 (system
// administration: subhost runs as root). `make deb` uses it; hidden,
// since it is a build step, not an operator's command.
func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "__man DIR",
		Hidden: true,
		Args:   exactArgs(1, "DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			root.DisableAutoGenTag = true
			return doc.GenManTree(root, &doc.GenManHeader{Title: "SUBHOST", Section: "8", Source: "subhost", Manual: "System Administration"}, args[0])
		},
	}
}
