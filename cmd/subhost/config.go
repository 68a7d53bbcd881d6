package main

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/subhost/subhost/internal/config"
	"github.com/subhost/subhost/sdk"
)

// configReport is what `subhost config` shows: where the subhost's files
// are and what its config sets.
type configReport struct {
	Name     string             `json:"name"`
	Pipeline string             `json:"pipeline"`
	Home     string             `json:"home"`
	Config   string             `json:"config"`
	Exists   bool               `json:"exists"`
	Vars     map[string]sdk.Var `json:"vars"`
}

func newConfigCmd() *cobra.Command {
	var t targetFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "config [--pipeline P] [--home DIR] [--config FILE] [--json] NAME",
		Short: "Show a subhost's home, its config file and the variables the file sets",
		Long: `Resolve the subhost's home and config file as run would, and show every
variable the config sets as subhost reads it: parsed, never run, with the
line that set it. DISKS and BRIDGES from the environment are not applied.
A missing config is not an error ("exists": false); a config subhost would
refuse is (exit 2). Tools that write configs read back what they wrote
with ` + "`--json`" + `.`,
		Args:              exactArgs(1, "NAME"),
		ValidArgsFunction: completeNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := readConfig(t, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			printConfig(cmd, rep)
			return nil
		},
	}
	t.register(cmd, "pretend-boot")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func readConfig(t targetFlags, name string) (configReport, error) {
	if err := sdk.ValidName(name); err != nil {
		return configReport{}, err
	}
	set, err := g.Pipelines()
	if err != nil {
		return configReport{}, err
	}
	pl, err := set.Get(t.pipeline)
	if err != nil {
		return configReport{}, err
	}
	home, path, err := t.target(name).Paths(pl)
	if err != nil {
		return configReport{}, err
	}
	rep := configReport{Name: name, Pipeline: pl.Name, Home: home, Config: path, Vars: map[string]sdk.Var{}}
	f, err := config.Load(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return rep, nil
	case err != nil:
		return rep, err
	}
	rep.Exists, rep.Vars = true, f.Vars
	return rep, nil
}

func printConfig(cmd *cobra.Command, rep configReport) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "home   %s\n", rep.Home)
	if !rep.Exists {
		fmt.Fprintf(w, "config %s (none)\n", rep.Config)
		return
	}
	fmt.Fprintf(w, "config %s\n", rep.Config)
	names := make([]string, 0, len(rep.Vars))
	for n := range rep.Vars {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		v := rep.Vars[n]
		quoted := make([]string, len(v.Words))
		for i, word := range v.Words {
			quoted[i] = strconv.Quote(word)
		}
		value := strings.Join(quoted, " ")
		if v.IsArray {
			value = "( " + value + " )"
		}
		fmt.Fprintf(w, "  %s = %s  (%s)\n", n, value, v.Origin)
	}
}
