package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/monitor"
	"github.com/subhost/subhost/internal/supervisor"
)

// newSuperviseCmd is the supervisor process, started by run (see package
// supervisor): its spec comes on standard input, or, when subhost-monitor
// executes it again, in the hand-over.
func newSuperviseCmd() *cobra.Command {
	handoverFD := -1
	cmd := &cobra.Command{
		Use:    supervisor.Command + " NAME",
		Hidden: true,
		Args:   exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := supervisor.Main(cmd.Context(), handoverFD)
			var reported supervisor.ReportedError
			if errors.As(err, &reported) {
				_, code := failure(cmd, reported.Err)
				return silentError{code}
			}
			return err
		},
	}
	cmd.Flags().IntVar(&handoverFD, monitor.FDFlag[2:], -1, "descriptor of subhost-monitor's hand-over")
	return cmd
}
