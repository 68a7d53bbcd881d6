package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/trust"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/goplugin"
)

// Host finds and starts plugins.
type Host struct {
	// Dirs are the directories searched for plugins, in order (SearchPath).
	Dirs []string
	// SocketDir is a root-only directory for go-plugin's sockets.
	SocketDir string
	Logger    hclog.Logger
	// LogLevel is passed to plugins (SUBHOST_LOG_LEVEL).
	LogLevel string
	// Reattach maps plugin names to stages started by hand with --debug
	// (from SUBHOST_REATTACH_PLUGINS).
	Reattach map[string]*plugin.ReattachConfig
}

// Plugin is one running stage plugin.
type Plugin struct {
	Name   string // stage name
	path   string
	SHA256 string
	stage  sdk.Stage
	client *plugin.Client
	proc   *process
}

// fixedEnv is the whole environment a plugin gets besides go-plugin's own
// variables: nothing of the caller's leaks in. GOMAXPROCS is the
// runner's own, which its runtime worked out from the CPUs and the
// cgroup CPU limit: a plugin told it skips that work (reading its
// cgroups and mountinfo), a few tenths of a millisecond of every start.
func (h *Host) fixedEnv() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"GOMAXPROCS=" + strconv.Itoa(runtime.GOMAXPROCS(0)),
		sdk.LogLevelEnv + "=" + h.LogLevel,
	}
}

// Start starts the plugin at path for stage and connects to it. pin, when
// set, is the sha256 the file must have.
func (h *Host) Start(ctx context.Context, stage, path, pin string) (*Plugin, error) {
	logger := h.Logger.Named(stage)
	base := filepath.Base(path)
	if rc, ok := h.Reattach[base]; ok {
		client := plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig:  goplugin.Handshake,
			Plugins:          goplugin.PluginSet(nil),
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
			Reattach:         rc,
			Logger:           logger,
		})
		return h.dispense(&Plugin{Name: stage, path: "reattached:" + base, client: client})
	}

	// Hashing a plugin costs more than starting it: only when pinned.
	exe, sum, err := openTrusted(path, pin != "")
	if err != nil {
		return nil, err
	}
	if pin != "" && !strings.EqualFold(pin, sum) {
		exe.Close()
		return nil, sdk.Invalidf("plugin %s has sha256 %s, the pipeline pins %s", path, sum, strings.ToLower(pin))
	}
	if err := os.MkdirAll(h.SocketDir, 0o700); err != nil {
		exe.Close()
		return nil, err
	}
	p := &Plugin{Name: stage, path: path, SHA256: sum}
	p.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  goplugin.Handshake,
		Plugins:          goplugin.PluginSet(nil),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
		SkipHostEnv:      true,
		StartTimeout:     30 * time.Second,
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: h.SocketDir},
		RunnerFunc: func(l hclog.Logger, cmd *exec.Cmd, _ string) (runner.Runner, error) {
			proc, err := newProcess(exe, path, append(h.fixedEnv(), cmd.Env...))
			p.proc = proc
			return proc, err
		},
	})
	return h.dispense(p)
}

func (h *Host) dispense(p *Plugin) (*Plugin, error) {
	rpc, err := p.client.Client()
	if err != nil {
		p.Kill()
		return nil, fmt.Errorf("start plugin %s: %w", p.path, err)
	}
	raw, err := rpc.Dispense(goplugin.PluginName)
	if err != nil {
		p.Kill()
		return nil, fmt.Errorf("plugin %s: %w", p.path, err)
	}
	p.stage = raw.(sdk.Stage)
	return p, nil
}

// Stage is the plugin's stage, called over RPC.
func (p *Plugin) Stage() sdk.Stage { return p.stage }

// Path is the plugin's executable, or "reattached:NAME" for one started by
// hand with --debug.
func (p *Plugin) Path() string { return p.path }

// Resolve finds a stage plugin by name in the host's directories.
func (h *Host) Resolve(name string) (string, error) { return Resolve(h.Dirs, name) }

// Exited reports whether the plugin process has gone (crashed or killed).
func (p *Plugin) Exited() bool { return p.client.Exited() }

// Kill kills the plugin's whole process group (a plugin's own children
// too) and waits for it.
func (p *Plugin) Kill() {
	if p.proc != nil {
		p.proc.Kill(context.Background())
	}
	p.client.Kill()
}

// openTrusted opens a plugin executable, checks that it and its directory
// are root's alone, and (when asked) hashes the open file: the same
// descriptor is what gets executed, so the hash and the permission check
// hold for exactly the code that runs.
func openTrusted(path string, hash bool) (*os.File, string, error) {
	f, err := trust.Open(path, "plugin")
	if err != nil {
		return nil, "", err
	}
	if !hash {
		return f, "", nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		f.Close()
		return nil, "", fmt.Errorf("plugin %s: %w", path, err)
	}
	return f, hex.EncodeToString(h.Sum(nil)), nil
}

// SHA256 hashes a plugin file after the same trust checks as Start.
func SHA256(path string) (string, error) {
	f, sum, err := openTrusted(path, true)
	if f != nil {
		f.Close()
	}
	return sum, err
}

// process is a go-plugin runner.Runner: the plugin executable run from
// its open descriptor, in its own process group.
type process struct {
	killed         atomic.Bool
	cmd            *exec.Cmd
	exe            *os.File
	stdout, stderr io.ReadCloser
	name           string
}

func newProcess(exe *os.File, path string, env []string) (*process, error) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		// What runs is what was checked and hashed: the open file,
		// handed to the child as its descriptor 3 (ExtraFiles[0]; the
		// plugin's sdk.Main marks it close-on-exec). Not exe's number in
		// this process: before the exec, the child moves descriptors
		// onto numbers just above the files it is given, and one of
		// them could be that number (under load, one start in a few
		// hundred then failed with EACCES: it executed a pipe).
		Path:       "/proc/self/fd/3",
		Args:       []string{path},
		Env:        env,
		ExtraFiles: []*os.File{exe},
		Stdin:      devnull,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:   true,
			Pdeathsig: syscall.SIGKILL,
		},
	}
	p := &process{cmd: cmd, exe: exe, name: path}
	if p.stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	if p.stderr, err = cmd.StderrPipe(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *process) Start(context.Context) error {
	err := p.cmd.Start()
	p.exe.Close()
	if in, ok := p.cmd.Stdin.(*os.File); ok {
		in.Close()
	}
	return err
}

// Wait reports a plugin that died of our own SIGKILL as a normal end:
// that is how every plugin ends, and not worth an error in the log.
func (p *process) Wait(context.Context) error {
	err := p.cmd.Wait()
	if p.killed.Load() {
		return nil
	}
	return err
}

// Kill SIGKILLs the whole process group: go-plugin's own Kill reaches the
// plugin's PID only, and a plugin's children would survive it.
func (p *process) Kill(context.Context) error {
	if p.cmd.Process == nil {
		return nil
	}
	p.killed.Store(true)
	err := unix.Kill(-p.cmd.Process.Pid, unix.SIGKILL)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

func (p *process) Stdout() io.ReadCloser { return p.stdout }
func (p *process) Stderr() io.ReadCloser { return p.stderr }
func (p *process) Name() string          { return p.name }
func (p *process) ID() string {
	if p.cmd.Process == nil {
		return ""
	}
	return strconv.Itoa(p.cmd.Process.Pid)
}
func (p *process) Diagnose(context.Context) string {
	return "the plugin did not speak the subhost stage protocol; is it a subhost stage built with sdk.Main?"
}
func (p *process) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (p *process) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }
