package pluginhost

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/subhost/subhost/internal/trust"
	"github.com/subhost/subhost/sdk"
)

// Host finds and starts plugins.
//
// It is the runner's side of go-plugin's protocol, for gRPC plugins only:
// the plugin is started with go-plugin's cookie and variables, answers
// with go-plugin's handshake line, and is served over gRPC on the unix
// socket the line names; its standard error carries hclog's JSON lines.
// Not go-plugin's client itself: that package brings net/rpc, gob, yamux
// and gRPC reflection (protodesc) into every process that starts a
// plugin, most of a millisecond of package initialisation on each boot's
// critical path, and opens two streams per plugin (stdio and broker)
// that nothing here uses. sdk/goplugin's tests hold a plugin to
// go-plugin's own client, and this one to the same plugins.
type Host struct {
	// Dirs are the directories searched for plugins, in order (SearchPath).
	Dirs []string
	// SocketDir is a root-only directory for the plugins' sockets.
	SocketDir string
	Logger    hclog.Logger
	// LogLevel is passed to plugins (SUBHOST_LOG_LEVEL).
	LogLevel string
	// Reattach maps plugin names to stages started by hand with --debug
	// (from SUBHOST_REATTACH_PLUGINS, ParseReattach).
	Reattach map[string]sdk.Reattach
	// StartTimeout bounds the wait for a plugin's handshake line;
	// DefaultStartTimeout when 0.
	StartTimeout time.Duration

	swept sync.Once // SweepSockets, once, at the first start
}

// DefaultStartTimeout is how long a plugin may take to answer.
const DefaultStartTimeout = 30 * time.Second

// Plugin is one running stage plugin.
type Plugin struct {
	Name   string // stage name
	path   string
	SHA256 string
	stage  sdk.Stage
	conn   *grpc.ClientConn
	proc   *process // nil when reattached
	// socket is the plugin's socket, removed once the plugin is gone (a
	// plugin killed cannot remove it).
	socket string
	logger hclog.Logger
}

// fixedEnv is the whole environment a plugin gets besides go-plugin's own
// variables: nothing of the caller's leaks in.
//
// GOMAXPROCS is 1: a plugin serves one call at a time, and its work is
// system calls, which run beside the one P anyway. With more Ps, its
// runtime starts threads that spin looking for goroutines to run, CPU
// that the other plugins of the boot, starting at the same moment, are
// short of. Measured on two CPUs: 0.25-0.55 ms less CPU per plugin start
// (100-150 starts of each), 2 ms less per boot with no change in its time
// (bench -before-bin, paired), and with 100 subhosts booting at once
// each run's median boot 0.3-1.9 s sooner than the runs of GOMAXPROCS 2
// beside it (four runs alternating with five; the last one up was not
// sooner every time).
// A site's plugin that wants more sets it itself (runtime.GOMAXPROCS).
// (The variable saves no work at start: since Go 1.25 the runtime
// reads /proc/self/cgroup, mountinfo and the CPU quota whatever it
// says.)
func (h *Host) fixedEnv() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		pluginGOMAXPROCS,
		sdk.LogLevelEnv + "=" + h.LogLevel,
		// go-plugin's: the cookie, the protocol versions this runner
		// speaks, and where the plugin puts its socket.
		sdk.MagicCookieKey + "=" + sdk.MagicCookieValue,
		"PLUGIN_PROTOCOL_VERSIONS=" + strconv.Itoa(sdk.ProtocolVersion),
		"PLUGIN_UNIX_SOCKET_DIR=" + h.SocketDir,
	}
}

// Start starts the plugin at path for stage and connects to it. pin, when
// set, is the sha256 the file must have.
func (h *Host) Start(ctx context.Context, stage, path, pin string) (*Plugin, error) {
	logger := h.Logger.Named(stage)
	base := filepath.Base(path)
	if r, ok := h.Reattach[base]; ok {
		p := &Plugin{Name: stage, path: "reattached:" + base, logger: logger}
		if err := p.connect(r.Addr.Network, r.Addr.String); err != nil {
			return nil, fmt.Errorf("plugin %s: %w", p.path, err)
		}
		return p, nil
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
	h.swept.Do(func() {
		// In the background: it reads a directory that is nearly always
		// empty, and nothing here waits for it.
		go func() {
			if n := SweepSockets(h.SocketDir, time.Now()); n > 0 {
				h.Logger.Debug("removed sockets of plugins that died with their runner", "dir", h.SocketDir, "count", n)
			}
		}()
	})
	proc, err := newProcess(exe, path, h.fixedEnv())
	if err != nil {
		exe.Close()
		return nil, err
	}
	p := &Plugin{Name: stage, path: path, SHA256: sum, proc: proc, logger: logger}
	if err := proc.Start(); err != nil {
		return nil, fmt.Errorf("start plugin %s: %w", path, err)
	}
	logger.Debug("plugin started", "path", path, "pid", proc.cmd.Process.Pid)
	go func() {
		<-proc.done
		// Every plugin ends killed; one that ended otherwise crashed
		// (its last words are on the lines forwarded above).
		if !proc.endedByKill() {
			logger.Warn("plugin process exited by itself", "path", path, "pid", proc.cmd.Process.Pid, "status", proc.status)
		}
	}()
	// Under the executable's name too, as go-plugin's client logged them
	// ("subhost.STAGE.PLUGIN: ..."): what operators grep for.
	go forwardLog(logger.Named(base), proc.stderr)
	if err := p.handshake(ctx, h.startTimeout()); err != nil {
		p.Kill()
		return nil, fmt.Errorf("start plugin %s: %w", path, err)
	}
	return p, nil
}

func (h *Host) startTimeout() time.Duration {
	if h.StartTimeout > 0 {
		return h.StartTimeout
	}
	return DefaultStartTimeout
}

// handshake reads the plugin's handshake line, go-plugin's
// CORE|APP|NETWORK|ADDRESS|PROTOCOL, checks it and connects.
func (p *Plugin) handshake(ctx context.Context, timeout time.Duration) error {
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(p.proc.stdout)
		line, err := r.ReadString('\n')
		if err == nil {
			lines <- line
		}
		close(lines)
		// The rest, if a plugin writes any, is only worth a debug line.
		for {
			l, err := r.ReadString('\n')
			if l = strings.TrimRight(l, "\n"); l != "" {
				p.logger.Debug("plugin stdout", "line", l)
			}
			if err != nil {
				p.proc.stdout.Close()
				return
			}
		}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var line string
	for answered := false; !answered; {
		select {
		case l, ok := <-lines:
			if !ok {
				// Standard output closed without a line: the plugin is
				// ending, or hangs without it (the timeout).
				lines = nil
				continue
			}
			line, answered = l, true
		case <-p.proc.done:
			// A line written just before the end still counts (a child
			// of the plugin could hold its output open: not for long).
			if lines != nil {
				select {
				case l, ok := <-lines:
					if ok {
						line, answered = l, true
						continue
					}
				case <-time.After(100 * time.Millisecond):
				}
			}
			return fmt.Errorf("it exited (%s) before it answered: %s", p.proc.status, notAStage)
		case <-timer.C:
			return fmt.Errorf("no answer in %s: %s", timeout, notAStage)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f := strings.Split(strings.TrimSpace(line), "|")
	switch {
	case len(f) < 5:
		return fmt.Errorf("it answered %q: %s", strings.TrimSpace(line), notAStage)
	case f[0] != "1":
		return fmt.Errorf("it speaks go-plugin's core protocol %s, this subhost 1: %s", f[0], notAStage)
	case f[1] != strconv.Itoa(sdk.ProtocolVersion):
		return fmt.Errorf("it speaks stage protocol version %s, this subhost %d: use a subhost and a plugin built from the same release", f[1], sdk.ProtocolVersion)
	case f[4] != "grpc":
		return fmt.Errorf("it serves go-plugin's %q protocol, not grpc: %s", f[4], notAStage)
	case f[2] != "unix" || filepath.Dir(f[3]) != filepath.Clean(p.proc.socketDir) || filepath.Clean(f[3]) != f[3]:
		// Only a name right in the directory: the socket is removed as
		// root once the plugin is gone.
		return fmt.Errorf("it serves on %s %s, not a unix socket in %s", f[2], f[3], p.proc.socketDir)
	}
	p.socket = f[3]
	return p.connect(f[2], f[3])
}

// pluginGOMAXPROCS is every plugin's (fixedEnv says why).
const pluginGOMAXPROCS = "GOMAXPROCS=1"

// notAStage is what a plugin that does not speak the protocol is told.
const notAStage = "the plugin did not speak the subhost stage protocol; is it a subhost stage built with sdk.Main?"

// connect makes the gRPC connection to the plugin (made on the first
// call) and the stage served on it.
func (p *Plugin) connect(network, addr string) error {
	if network != "unix" && network != "tcp" {
		return fmt.Errorf("unknown network %q", network)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)),
	)
	if err != nil {
		return err
	}
	p.conn, p.stage = conn, sdk.NewClient(conn)
	return nil
}

// Stage is the plugin's stage, called over RPC.
func (p *Plugin) Stage() sdk.Stage { return p.stage }

// Path is the plugin's executable, or "reattached:NAME" for one started by
// hand with --debug.
func (p *Plugin) Path() string { return p.path }

// Resolve finds a stage plugin by name in the host's directories.
func (h *Host) Resolve(name string) (string, error) { return Resolve(h.Dirs, name) }

// Exited reports whether the plugin process has gone (crashed or killed).
// A reattached plugin is not this runner's to watch: never.
func (p *Plugin) Exited() bool {
	if p.proc == nil {
		return false
	}
	select {
	case <-p.proc.done:
		return true
	default:
		return false
	}
}

// Kill kills the plugin's whole process group (a plugin's own children
// too), waits for it, and removes what it leaves: its socket. A
// reattached plugin is only disconnected: whoever started it stops it.
func (p *Plugin) Kill() {
	if p.proc != nil {
		p.proc.kill()
		select {
		case <-p.proc.done:
		case <-time.After(killWait):
			// Reaped by its waiter whenever it dies.
			pid := p.proc.cmd.Process.Pid
			p.logger.Error("the plugin does not die of SIGKILL: it sleeps in the kernel (a hung file server or device?); going on without it", "pid", pid, "wchan", wchan(pid))
		}
	}
	if p.conn != nil {
		p.conn.Close()
	}
	if p.socket != "" {
		os.Remove(p.socket)
	}
}

// killWait bounds Kill's wait for a plugin to die. SIGKILL ends a process
// at once unless it sleeps uninterruptibly in the kernel (a hard NFS
// mount whose server is gone, a stuck device, a frozen cgroup), which can
// last for ever: the runner must not hang with it.
var killWait = 10 * time.Second

// wchan is what the kernel says process pid waits in, for a log line.
func wchan(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
	return string(b)
}

// forwardLog logs the plugin's standard error through the runner's
// logger: hclog's JSON lines (what sdk.Main writes) at their own level
// with their fields, anything else (a panic's trace) as it is, at error
// level once a panic began and at debug level before. A line longer than
// its buffer is logged in pieces, as it is: the plugin's writes never
// wait for a reader that gave up.
func forwardLog(l hclog.Logger, r io.ReadCloser) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 64*1024)
	inPanic, continued := false, false
	for {
		line, isPrefix, err := br.ReadLine()
		if err != nil {
			return
		}
		if isPrefix || continued {
			l.Debug(string(line))
			continued = isPrefix
			continue
		}
		level, msg, args, ok := parseLogLine(line)
		if !ok {
			text := string(line)
			if strings.HasPrefix(text, "panic: ") || strings.HasPrefix(text, "fatal error: ") {
				inPanic = true
			}
			if inPanic {
				l.Error(text)
			} else {
				l.Debug(text)
			}
			continue
		}
		l.Log(level, msg, args...)
	}
}

// parseLogLine decodes one of hclog's JSON lines: its level, message and
// the other fields, sorted by name ("@module" first among them).
func parseLogLine(line []byte) (hclog.Level, string, []any, bool) {
	if len(line) == 0 || line[0] != '{' {
		return 0, "", nil, false
	}
	var raw map[string]any
	if json.Unmarshal(line, &raw) != nil {
		return 0, "", nil, false
	}
	lv, _ := raw["@level"].(string)
	msg, _ := raw["@message"].(string)
	level := hclog.LevelFromString(lv)
	if level == hclog.NoLevel {
		return 0, "", nil, false
	}
	delete(raw, "@level")
	delete(raw, "@message")
	delete(raw, "@timestamp")
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, k, raw[k])
	}
	return level, msg, args, true
}

// ParseReattach decodes the value of sdk.ReattachEnv: the stages started
// by hand with --debug, by plugin name.
func ParseReattach(value string) (map[string]sdk.Reattach, error) {
	var out map[string]sdk.Reattach
	if err := json.Unmarshal([]byte(value), &out); err != nil {
		return nil, err
	}
	for name, r := range out {
		if r.Addr.Network != "unix" && r.Addr.Network != "tcp" {
			return nil, fmt.Errorf("stage %q: unknown network %q", name, r.Addr.Network)
		}
		if r.Protocol != "grpc" {
			return nil, fmt.Errorf("stage %q: protocol %q, not grpc", name, r.Protocol)
		}
	}
	return out, nil
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

// process is a plugin executable run from its open descriptor, in its
// own process group.
type process struct {
	cmd            *exec.Cmd
	exe            *os.File
	stdout, stderr io.ReadCloser
	socketDir      string
	// done is closed once the process is reaped; status (and state, nil
	// when the wait failed) then say how it ended.
	done   chan struct{}
	status string
	state  *os.ProcessState
	// killed is set by kill: the end every plugin has.
	killed atomic.Bool
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
	p := &process{cmd: cmd, exe: exe, done: make(chan struct{})}
	for _, e := range env {
		if dir, ok := strings.CutPrefix(e, "PLUGIN_UNIX_SOCKET_DIR="); ok {
			p.socketDir = dir
		}
	}
	if p.stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	if p.stderr, err = cmd.StderrPipe(); err != nil {
		return nil, err
	}
	return p, nil
}

// Start starts the process and reaps it in the background (done).
func (p *process) Start() error {
	err := p.cmd.Start()
	p.exe.Close()
	if in, ok := p.cmd.Stdin.(*os.File); ok {
		in.Close()
	}
	if err != nil {
		p.stdout.Close()
		p.stderr.Close()
		close(p.done)
		return err
	}
	go func() {
		// The process, not the Cmd: Cmd.Wait would close the output
		// pipes under their readers.
		st, err := p.cmd.Process.Wait()
		if err != nil {
			p.status = err.Error()
		} else {
			p.status, p.state = st.String(), st
		}
		close(p.done)
	}()
	return nil
}

// endedByKill reports, once done is closed, whether the process died of
// kill's SIGKILL rather than by itself.
func (p *process) endedByKill() bool {
	if !p.killed.Load() || p.state == nil {
		return false
	}
	ws, ok := p.state.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// kill SIGKILLs the whole process group: a plugin's children go with it.
func (p *process) kill() {
	if p.cmd.Process == nil {
		return
	}
	p.killed.Store(true)
	unix.Kill(-p.cmd.Process.Pid, unix.SIGKILL)
}
