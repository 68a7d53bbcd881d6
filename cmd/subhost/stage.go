package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/sdk"
)

func newStageCmd() *cobra.Command {
	var t targetFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stage STAGE up|down|check [--pipeline P] [--home DIR] NAME",
		Short: "Run one stage alone against a subhost (debugging)",
		Long: `Run one stage's Up, Down or Check against the subhost's recorded boot
record, and print the request and the result as JSON. Up records its result
as a run would; Down forgets the stage, and the subhost once no stage is up.
With SUBHOST_REATTACH_PLUGINS set (see a plugin's --debug), the stage runs
in a plugin started by hand, e.g. under a debugger.`,
		Args: exactArgs(3, "STAGE, an operation (up, down, check) and NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := newRunner()
			if err != nil {
				return err
			}
			// Against a subhost that has state, default to the pipeline,
			// home and config it was brought up with.
			target := t.target(args[2])
			if st, err := (state.Dir{Root: g.StateDir, Name: args[2]}).Load(); err == nil && sdk.ValidName(args[2]) == nil {
				if !cmd.Flags().Changed("pipeline") {
					target.Pipeline = st.Pipeline
				}
				if !cmd.Flags().Changed("home") {
					target.Home = st.Home
				}
				if !cmd.Flags().Changed("config") && target.Config == "" {
					target.Config, target.ConfigRecorded = st.Subhost.ConfigFile, true
				}
			}
			plan, err := r.MakePlan(target)
			if err != nil {
				return err
			}
			report, err := r.StageOp(cmd.Context(), plan, args[0], args[1])
			if report != nil && (asJSON || err == nil) {
				out, _ := json.MarshalIndent(report, "", "  ")
				fmt.Fprintln(cmd.OutOrStdout(), string(out))
			}
			return err
		},
	}
	t.register(cmd, "pretend-boot")
	cmd.Flags().Lookup("pipeline").Usage = "the pipeline (default: the one the subhost runs with, else pretend-boot)"
	cmd.Flags().BoolVar(&asJSON, "json", true, "print the request and result as JSON")
	return cmd
}
