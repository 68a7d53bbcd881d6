package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/internal/settings"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/internal/version"
)

// g holds the global flags; the supervisor gets the same struct.
var g = settings.Settings{StateDir: state.DefaultRoot}

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
		// An unknown command is one line, its suggestions in it (failure).
		DisableSuggestions:         true,
		SuggestionsMinimumDistance: 2,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if g.LogLevel != "" && hclog.LevelFromString(g.LogLevel) == hclog.NoLevel {
			return usageError{fmt.Errorf("unknown log level %q (want trace, debug, info, warn or error)", g.LogLevel)}
		}
		// The supervisor keeps writing there long after this command,
		// whatever becomes of its working directory.
		if g.LogDir != "" {
			abs, err := filepath.Abs(g.LogDir)
			if err != nil {
				return usageError{fmt.Errorf("--log-dir %s: %w", g.LogDir, err)}
			}
			g.LogDir = abs
		}
		return nil
	}
	pf := root.PersistentFlags()
	pf.StringSliceVar(&g.PluginDirs, "plugin-dir", nil, "search this directory for stage plugins first (repeatable)")
	pf.StringSliceVar(&g.PipelineFiles, "pipeline-file", nil, "read pipelines from this HCL file too (repeatable)")
	pf.StringVar(&g.LogLevel, "log-level", "", "log level: trace, debug, info, warn, error (default warn)")
	pf.CountVarP(&g.Verbose, "verbose", "v", "more detail (-v info, -vv debug, -vvv trace)")
	pf.StringVar(&g.StateDir, "state-dir", state.DefaultRoot, "where subhost keeps its state")
	pf.MarkHidden("state-dir")
	pf.StringVar(&g.EtcDir, "etc-dir", settings.DefaultEtc(), "the site's configuration: pipelines/, plugins/ and autostart/ (also $"+settings.EtcDirEnv+")")
	pf.StringVar(&g.LogDir, "log-dir", settings.DefaultLogs(), "where each subhost's console log (NAME.log) and supervisor log (NAME.supervisor.log) go (also $"+settings.LogDirEnv+")")

	root.AddCommand(
		newRunCmd(), newStopCmd(), newStatusCmd(), newListCmd(),
		newStageCmd(), newPipelinesCmd(), newPluginsCmd(), newVersionCmd(),
		newImageCmd(), newControlUsageCmd(), newSuperviseCmd(),
		newConsoleCmd(), newEnterCmd(), newDescribeCmd(), newSetCmd(),
		newEnableCmd(), newDisableCmd(), newAutostartCmd(),
	)
	for _, c := range buildOnlyCmds {
		root.AddCommand(c())
	}
	root.AddCommand(newConfigCmd())
	return root
}

// buildOnlyCmds are commands compiled in by build tags for build steps
// (the man pages: man.go).
var buildOnlyCmds []func() *cobra.Command

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("want %s, got %d argument(s)", what, len(args))}
		}
		return nil
	}
}

// newRunner is the runner for a command: progress lines on a terminal.
func newRunner() (*runner.Runner, error) {
	r, err := g.NewRunner()
	if err != nil {
		return nil, err
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		r.Progress = os.Stderr
	}
	return r, nil
}

// newStopRunner is newRunner for the commands that work from the recorded
// state alone (stop, set): a pipeline file broken since the boot, or an
// editor's leftover beside it, must not keep a running subhost from being
// stopped. The runner then has no pipelines, and says so in a warning.
func newStopRunner() (*runner.Runner, error) {
	r, err := g.ResumeRunner()
	if err != nil {
		return nil, err
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
