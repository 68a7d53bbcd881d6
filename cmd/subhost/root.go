package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/subhost/subhost/internal/pipeline"
	"github.com/subhost/subhost/internal/pluginhost"
	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/internal/version"
	"github.com/subhost/subhost/sdk"
)

// globals are the flags every command has.
type globals struct {
	pluginDirs    []string
	pipelineFiles []string
	logLevel      string
	verbose       int
	stateDir      string
}

var g globals

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "subhost",
		Short: "Run sandboxed services on this host, booted almost as if in a VM",
		Long: `subhost boots a "subhost": a root filesystem from a disk image partition
(or an overlay or rbind of a directory), its own network namespace wired
into host bridges with fixed MACs, and the guest's own sysvinit scripts,
through a pipeline of stage plugins.`,
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if g.logLevel != "" && hclog.LevelFromString(g.logLevel) == hclog.NoLevel {
			return usageError{fmt.Errorf("unknown log level %q (want trace, debug, info, warn or error)", g.logLevel)}
		}
		return nil
	}
	pf := root.PersistentFlags()
	pf.StringSliceVar(&g.pluginDirs, "plugin-dir", nil, "search this directory for stage plugins first (repeatable)")
	pf.StringSliceVar(&g.pipelineFiles, "pipeline-file", nil, "read pipelines from this HCL file too (repeatable)")
	pf.StringVar(&g.logLevel, "log-level", "", "log level: trace, debug, info, warn, error (default warn)")
	pf.CountVarP(&g.verbose, "verbose", "v", "more detail (-v info, -vv debug, -vvv trace)")
	pf.StringVar(&g.stateDir, "state-dir", state.DefaultRoot, "where subhost keeps its state")
	pf.MarkHidden("state-dir")

	root.AddCommand(
		newRunCmd(), newStopCmd(), newStatusCmd(), newListCmd(),
		newStageCmd(), newPipelinesCmd(), newPluginsCmd(), newVersionCmd(),
		newImageCmd(), newControlUsageCmd(), newSuperviseCmd(),
		newConsoleCmd(), newEnterCmd(),
	)
	return root
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("want %s, got %d argument(s)", what, len(args))}
		}
		return nil
	}
}

func (g *globals) level() hclog.Level {
	if g.logLevel != "" {
		return hclog.LevelFromString(g.logLevel)
	}
	switch {
	case g.verbose >= 3:
		return hclog.Trace
	case g.verbose == 2:
		return hclog.Debug
	case g.verbose == 1:
		return hclog.Info
	}
	return hclog.Warn
}

func (g *globals) logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "subhost",
		Level:  g.level(),
		Output: os.Stderr,
		Color:  hclog.AutoColor,
	})
}

// newRunner loads the pipelines and sets up the plugin host.
func (g *globals) newRunner() (*runner.Runner, error) {
	set, err := pipeline.Load(pipeline.LoadOptions{Files: g.pipelineFiles})
	if err != nil {
		return nil, err
	}
	logger := g.logger()
	r := &runner.Runner{
		Pipelines:  set,
		PluginDirs: pluginhost.SearchPath(g.pluginDirs, os.Getenv),
		StateRoot:  g.stateDir,
		Logger:     logger,
		Plugins: &pluginhost.Host{
			SocketDir: filepath.Join(g.stateDir, ".plugins"),
			Logger:    logger,
			LogLevel:  g.level().String(),
		},
	}
	if v := os.Getenv(sdk.ReattachEnv); v != "" {
		if r.Plugins.Reattach, err = sdk.ParseReattach(v); err != nil {
			return nil, usageError{err}
		}
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		r.Progress = os.Stderr
	}
	return r, nil
}

func newControlUsageCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "control-usage",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return usageError{fmt.Errorf("usage: control start|stop NAME")}
		},
	}
}

func joinComma(xs []string) string { return strings.Join(xs, ", ") }
