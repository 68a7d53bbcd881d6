package main

import (
	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/runner"
)

type targetFlags struct {
	pipeline string
	home     string
	config   string
}

func (t *targetFlags) register(cmd *cobra.Command, defaultPipeline string) {
	f := cmd.Flags()
	f.StringVarP(&t.pipeline, "pipeline", "p", defaultPipeline, "the pipeline to run (see `subhost pipelines`)")
	f.StringVar(&t.home, "home", "", "the subhost's own directory (default: the pipeline's home followed by NAME)")
	f.StringVar(&t.config, "config", "", "the subhost's bash config (default: HOME/config)")
	cmd.RegisterFlagCompletionFunc("pipeline", completePipelines)
}

func (t *targetFlags) target(name string) runner.Target {
	return runner.Target{Name: name, Pipeline: t.pipeline, Home: t.home, Config: t.config}
}

func newRunCmd() *cobra.Command {
	var t targetFlags
	var detach bool
	cmd := &cobra.Command{
		Use:   "run [--pipeline P] [--home DIR] [--config FILE] [--detach] NAME",
		Short: "Bring a subhost up and boot its guest",
		Long: `Bring every stage of the pipeline up in order, then boot the guest with its
console on this terminal. On any failure every stage that was started is
brought down again, in reverse, and the host is left as it was.`,
		Args:              exactArgs(1, "NAME"),
		ValidArgsFunction: completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := g.newRunner()
			if err != nil {
				return err
			}
			plan, err := r.MakePlan(t.target(args[0]))
			if err != nil {
				return err
			}
			return runSubhost(cmd, r, plan, detach)
		},
	}
	t.register(cmd, "pretend-boot")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "run in the background; return once the guest's PID 1 runs")
	return cmd
}
