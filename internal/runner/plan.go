package runner

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/subhost/subhost/internal/config"
	"github.com/subhost/subhost/internal/pipeline"
	"github.com/subhost/subhost/sdk"
)

// Target says which subhost an operation is about, as the CLI got it.
type Target struct {
	Name     string
	Pipeline string
	Home     string // "" = the pipeline's home followed by Name
	Config   string // "" = HOME/config
	// ConfigRecorded says Config is the file a boot recorded, not one
	// named on the command line: like HOME/config, it may be gone.
	ConfigRecorded bool
}

// Paths resolves the subhost's home (absolute, without symlinks) and
// config file, whose defaults are the pipeline's home followed by the
// name, and HOME/config. A home reached through a symlink (/opt a link
// to /srv/opt) is given by the path it resolves to: the kernel's mount
// table names HOME/live so, and a stage comparing the two must not
// find its own mount missing.
func (t Target) Paths(pl *pipeline.Pipeline) (home, cfg string, err error) {
	home = t.Home
	if home == "" {
		home = filepath.Join(pl.Home, t.Name)
	}
	if home, err = filepath.Abs(home); err != nil {
		return "", "", err
	}
	if real, err := filepath.EvalSymlinks(home); err == nil {
		home = real // a home that does not exist is the stages' to report
	}
	cfg = t.Config
	if cfg == "" {
		cfg = filepath.Join(home, "config")
	}
	return home, cfg, nil
}

// Plan is everything an operation needs, read and checked before anything
// on the host is changed.
type Plan struct {
	Name     string
	Pipeline *pipeline.Pipeline
	Subhost  sdk.Subhost
	Stages   []PlannedStage
	// Restart is the config's RESTART= policy.
	Restart RestartPolicy
}

// PlannedStage is a pipeline stage with its plugin found.
type PlannedStage struct {
	pipeline.Stage
	Path string
}

// Index returns the position of the named stage, or -1.
func (p *Plan) Index(stage string) int {
	for i, s := range p.Stages {
		if s.Name == stage {
			return i
		}
	}
	return -1
}

// MakePlan checks the name, finds the pipeline and its plugins and reads
// the config. It changes nothing.
func (r *Runner) MakePlan(t Target) (*Plan, error) {
	if err := sdk.ValidName(t.Name); err != nil {
		return nil, err
	}
	pl, err := r.Pipelines.Get(t.Pipeline)
	if err != nil {
		return nil, err
	}
	home, cfgPath, err := t.Paths(pl)
	if err != nil {
		return nil, err
	}
	vars := map[string]sdk.Var{}
	file, err := config.Load(cfgPath)
	switch {
	case errors.Is(err, fs.ErrNotExist) && t.Config != "" && !t.ConfigRecorded:
		// A file named with --config that is not there is a typo or a
		// missing mount, not a wish to boot from the environment.
		return nil, sdk.Invalidf("--config %s: no such file or directory", cfgPath)
	case errors.Is(err, fs.ErrNotExist):
		// The scripts accepted DISKS and BRIDGES from the environment
		// instead of a config file.
		cfgPath = ""
	case err != nil:
		return nil, err
	default:
		vars = file.Vars
	}
	if err := config.ApplyEnv(vars, r.lookupEnv); err != nil {
		return nil, err
	}
	plan := &Plan{
		Name:     t.Name,
		Pipeline: pl,
		Subhost:  sdk.Subhost{Name: t.Name, Home: home, ConfigFile: cfgPath, Vars: vars},
	}
	if plan.Restart, err = restartPolicy(plan.Subhost); err != nil {
		return nil, err
	}
	for _, s := range pl.Stages {
		path, err := r.Stages.Resolve(s.Plugin)
		if err != nil {
			return nil, sdk.Invalidf("pipeline %q, stage %q: %w", pl.Name, s.Name, err)
		}
		plan.Stages = append(plan.Stages, PlannedStage{Stage: s, Path: path})
	}
	return plan, nil
}

func (r *Runner) lookupEnv(name string) (string, bool) {
	if r.Getenv != nil {
		return r.Getenv(name)
	}
	return os.LookupEnv(name)
}
