package main

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/sdk"
)

var setArgRE = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)

func newSetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set NAME KEY=VALUE...",
		Short: "Change a running subhost's limits in place (MEMORY_MAX=2G PIDS_MAX=500...)",
		Long: `Change settings of a running subhost live, through the stages that can
(the cgroup stage: MEMORY_MAX, MEMORY_HIGH, MEMORY_SWAP_MAX, PIDS_MAX,
CPU_MAX, CPU_WEIGHT, CPUSET_CPUS, IO_WEIGHT), checked as the config's values
are before any is applied. The config file is not changed: it governs the
next boot, so put the values there too to keep them.`,
		Example:           "  subhost set web1 MEMORY_MAX=2G CPU_MAX=1.5",
		Args:              setArgs,
		ValidArgsFunction: completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sdk.ValidName(args[0]); err != nil {
				return err
			}
			changes := map[string]string{}
			for _, a := range args[1:] {
				m := setArgRE.FindStringSubmatch(a)
				changes[m[1]] = m[2]
			}
			r, err := newStopRunner()
			if err != nil {
				return err
			}
			applied, err := r.Update(cmd.Context(), args[0], changes)
			if errors.Is(err, runner.ErrNotRunning) {
				return fmt.Errorf("subhost %s is not running", args[0])
			}
			stages := make([]string, 0, len(applied))
			for s := range applied {
				stages = append(stages, s)
			}
			sort.Strings(stages)
			for _, s := range stages {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s set by stage %s (until the next boot: the config is unchanged)\n", args[0], strings.Join(applied[s], ", "), s)
			}
			return err
		},
	}
}

func setArgs(cmd *cobra.Command, args []string) error {
	if len(args) < 2 {
		return usageError{fmt.Errorf("want NAME and at least one KEY=VALUE")}
	}
	for _, a := range args[1:] {
		if !setArgRE.MatchString(a) {
			return usageError{fmt.Errorf("%q: want KEY=VALUE, e.g. MEMORY_MAX=2G", a)}
		}
	}
	return nil
}
