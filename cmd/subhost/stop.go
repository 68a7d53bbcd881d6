package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/sdk"
)

func newStopCmd() *cobra.Command {
	var opts runner.StopOptions
	cmd := &cobra.Command{
		Use:   "stop [--timeout D] [--force] NAME",
		Short: "Power a subhost off and bring every stage down",
		Long: `Ask the guest's PID 1 to power off (SIGPWR), wait up to --timeout (by
default as long as the guest's PID 1 was given: its pipeline's init
shutdown_timeout, 30s unless it says otherwise), kill it, then bring every
stage down in reverse from the recorded state. Works with
or without a living supervisor, after a crash too; when a stage fails to
come down the state is kept, so stop can be run again.`,
		Args:              exactArgs(1, "NAME"),
		ValidArgsFunction: completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			// A zero or negative wait leaves the guest no time to power
			// off: it would be killed before its rc 0 ran, which is
			// what --force is for, and autostart stop refuses it too.
			if cmd.Flags().Changed("timeout") && opts.Timeout <= 0 {
				return usageError{fmt.Errorf("--timeout %s: want a positive duration", opts.Timeout)}
			}
			if err := sdk.ValidName(args[0]); err != nil {
				return err
			}
			r, err := newStopRunner()
			if err != nil {
				return err
			}
			err = r.Stop(cmd.Context(), args[0], opts)
			if errors.Is(err, runner.ErrNotRunning) {
				fmt.Fprintf(cmd.OutOrStdout(), "subhost %s is not running\n", args[0])
				return nil
			}
			if err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "subhost %s stopped\n", args[0])
			}
			return err
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 0, "how long the guest gets to power off before it is killed (default: its pipeline's shutdown_timeout, 30s unless set)")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "kill the guest at once (and a supervisor that does not finish)")
	return cmd
}
