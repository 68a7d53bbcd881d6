package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/autostart"
	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/sdk"
)

// autostartDir holds the enrolments.
func autostartDir() autostart.Dir { return autostart.Dir(g.AutostartDir()) }

func newEnableCmd() *cobra.Command {
	var e autostart.Entry
	cmd := &cobra.Command{
		Use:   "enable [--pipeline P] [--home DIR] [--order N] [--group G] [--delay D] NAME",
		Short: "Enrol a subhost to start at host boot (subhost autostart start)",
		Long: `Enrol a subhost: ` + "`subhost autostart start`" + ` (run at boot by the init script or
subhost.service) starts it, in ascending --order; subhosts of equal order
start in parallel; --delay waits after it before the next order starts.
The enrolment is one small file, ETC/autostart/NAME. Enabling again
replaces it. The pipeline, its plugins and the config (when it exists
already) are checked first; a bad one is refused and nothing is written.`,
		Args:              exactArgs(1, "NAME"),
		ValidArgsFunction: completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			e.Name = args[0]
			if e.Home != "" {
				abs, err := filepath.Abs(e.Home)
				if err != nil {
					return err
				}
				e.Home = abs
			}
			if err := e.Validate(); err != nil {
				return sdk.Invalidf("%w", err)
			}
			// What can be checked now is: the pipeline and its plugins,
			// and the config when it exists already.
			r, err := newRunner()
			if err != nil {
				return err
			}
			if _, err := r.MakePlan(runner.Target{Name: e.Name, Pipeline: e.Pipeline, Home: e.Home}); err != nil {
				return err
			}
			if err := autostartDir().Enable(e); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "subhost %s enabled (order %d)\n", e.Name, e.Order)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&e.Pipeline, "pipeline", "p", "pretend-boot", "the pipeline to run it with (see `subhost pipelines`)")
	f.StringVar(&e.Home, "home", "", "the subhost's own directory (default: the pipeline's home followed by NAME)")
	f.IntVar(&e.Order, "order", 0, "start order: lower first; equal orders start in parallel; stop is the reverse")
	f.StringVar(&e.Group, "group", "", "a group name, for `autostart start --group`")
	f.DurationVar(&e.Delay, "delay", 0*time.Second, "wait this long after it starts before the next order starts")
	cmd.RegisterFlagCompletionFunc("pipeline", completePipelines)
	return cmd
}
