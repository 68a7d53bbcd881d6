// Package settings holds the global flags every subhost command has, and
// turns them into a logger and a runner. The supervisor process gets the
// same struct (as JSON), so a new global flag reaches it without anyone
// copying arguments by hand.
package settings

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/subhost/subhost/internal/pipeline"
	"github.com/subhost/subhost/internal/pluginhost"
	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/sdk"
)

// Settings are the global flags.
type Settings struct {
	PluginDirs    []string `json:"plugin_dirs,omitempty"`
	PipelineFiles []string `json:"pipeline_files,omitempty"`
	LogLevel      string   `json:"log_level,omitempty"`
	Verbose       int      `json:"verbose,omitempty"`
	StateDir      string   `json:"state_dir,omitempty"`
	// EtcDir holds the site's pipelines/, plugins/ and autostart/.
	EtcDir string `json:"etc_dir,omitempty"`
	// LogDir holds each subhost's console log and its supervisor's log.
	LogDir string `json:"log_dir,omitempty"`
	// CgroupParent is not a flag: `run --supervise` sets it when a
	// service manager delegated its cgroup (cgroups.FindDelegation), and
	// the runner passes it to the stages.
	CgroupParent string `json:"cgroup_parent,omitempty"`
	// LogOutput is where Logger writes; standard error when nil. Not a
	// flag either: a supervisor holds its log in memory until its boot
	// begins (supervisor.PendingLog).
	LogOutput io.Writer `json:"-"`
}

// EtcDirEnv names the etc directory when --etc-dir is not given.
const EtcDirEnv = "SUBHOST_ETC_DIR"

// DefaultEtcDir is the etc directory when neither --etc-dir nor
// $SUBHOST_ETC_DIR names one.
const DefaultEtcDir = "/etc/subhost"

// DefaultEtc is $SUBHOST_ETC_DIR, else DefaultEtcDir: the --etc-dir flag's
// default.
func DefaultEtc() string { return orDefault(os.Getenv(EtcDirEnv), DefaultEtcDir) }

// LogDirEnv names the log directory when --log-dir is not given.
const LogDirEnv = "SUBHOST_LOG_DIR"

// DefaultLogDir is the log directory when neither --log-dir nor
// $SUBHOST_LOG_DIR names one.
const DefaultLogDir = "/var/log/subhost"

// DefaultLogs is $SUBHOST_LOG_DIR, else DefaultLogDir: the --log-dir
// flag's default.
func DefaultLogs() string { return orDefault(os.Getenv(LogDirEnv), DefaultLogDir) }

// Logs is the log directory.
func (s *Settings) Logs() string { return orDefault(s.LogDir, DefaultLogDir) }

// orDefault is dir, or def when dir is empty.
func orDefault(dir, def string) string {
	if dir == "" {
		return def
	}
	return dir
}

// ConsoleLog is a subhost's console log.
func (s *Settings) ConsoleLog(name string) string {
	return filepath.Join(s.Logs(), name+".log")
}

// SupervisorLog is a subhost's supervisor's own log.
func (s *Settings) SupervisorLog(name string) string {
	return filepath.Join(s.Logs(), name+".supervisor.log")
}

// AutostartDir holds the enrolments of `subhost enable`.
func (s *Settings) AutostartDir() string { return filepath.Join(s.Etc(), "autostart") }

// Etc is the etc directory.
func (s *Settings) Etc() string { return orDefault(s.EtcDir, DefaultEtcDir) }

// Level is the log level the flags ask for: --log-level, else one step
// per -v from warn.
func (s *Settings) Level() hclog.Level {
	if s.LogLevel != "" {
		return hclog.LevelFromString(s.LogLevel)
	}
	switch {
	case s.Verbose >= 3:
		return hclog.Trace
	case s.Verbose == 2:
		return hclog.Debug
	case s.Verbose == 1:
		return hclog.Info
	}
	return hclog.Warn
}

// Logger logs to LogOutput (standard error) at the asked level.
func (s *Settings) Logger() hclog.Logger {
	var out io.Writer = os.Stderr
	color := hclog.AutoColor
	if s.LogOutput != nil {
		// Bound for a file: no colours (hclog would colour any writer
		// that is not a file).
		out, color = s.LogOutput, hclog.ColorOff
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:   "subhost",
		Level:  s.Level(),
		Output: out,
		Color:  color,
	})
}

// Detailed reports whether the flags ask for more than warnings and
// errors (-v, --log-level info or below).
func (s *Settings) Detailed() bool {
	l := s.Level()
	return l != hclog.NoLevel && l < hclog.Warn
}

// StateRoot is where subhost keeps its state.
func (s *Settings) StateRoot() string {
	if s.StateDir == "" {
		return state.DefaultRoot
	}
	return s.StateDir
}

// Pipelines loads the built-in pipelines, ETC/pipelines/*.hcl and the
// files the flags name.
func (s *Settings) Pipelines() (*pipeline.Set, error) {
	return pipeline.Load(pipeline.LoadOptions{Dirs: []string{filepath.Join(s.Etc(), "pipelines")}, Files: s.PipelineFiles})
}

// PluginHost starts stage plugins, its sockets under the state root.
func (s *Settings) PluginHost(logger hclog.Logger) (*pluginhost.Host, error) {
	h := &pluginhost.Host{
		Dirs:      pluginhost.SearchPath(s.PluginDirs, filepath.Join(s.Etc(), "plugins"), os.Getenv),
		SocketDir: filepath.Join(s.StateRoot(), ".plugins"),
		Logger:    logger,
		LogLevel:  s.Level().String(),
	}
	if v := os.Getenv(sdk.ReattachEnv); v != "" {
		var err error
		if h.Reattach, err = pluginhost.ParseReattach(v); err != nil {
			return nil, sdk.Invalidf("%s: %v", sdk.ReattachEnv, err)
		}
	}
	return h, nil
}

// PluginStages gives the runner its stages as plugin processes.
type PluginStages struct{ *pluginhost.Host }

// Start starts the plugin serving a stage.
func (p PluginStages) Start(ctx context.Context, stage, path, pin string) (runner.Instance, error) {
	pl, err := p.Host.Start(ctx, stage, path, pin)
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	return pl, nil
}

// NewRunner loads the pipelines and sets up the plugin host.
func (s *Settings) NewRunner() (*runner.Runner, error) {
	set, err := s.Pipelines()
	if err != nil {
		return nil, err
	}
	return s.newRunner(set)
}

// ResumeRunner is NewRunner for what works from a running subhost's
// recorded state: a supervisor that takes it back from subhost-monitor,
// stop and set. Pipeline files broken since the boot must not end the
// supervision of a guest that runs, nor keep it from being stopped: the
// runner then has no pipelines, and runner.ResumePlan and Stop take the
// plan recorded at boot.
func (s *Settings) ResumeRunner() (*runner.Runner, error) {
	set, err := s.Pipelines()
	if err != nil {
		set = nil
	}
	r, rerr := s.newRunner(set)
	if rerr != nil {
		return nil, rerr
	}
	if err != nil {
		r.Logger.Warn("the pipelines do not load: working from the plan recorded at boot", sdk.LogKeyError, err)
	}
	return r, nil
}

func (s *Settings) newRunner(set *pipeline.Set) (*runner.Runner, error) {
	logger := s.Logger()
	host, err := s.PluginHost(logger)
	if err != nil {
		return nil, err
	}
	return &runner.Runner{
		Pipelines: set,
		Stages:    PluginStages{host},
		StateRoot: s.StateRoot(),
		Logger:    logger,

		CgroupParent: s.CgroupParent,
	}, nil
}
