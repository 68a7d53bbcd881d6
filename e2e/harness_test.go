package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/testbin"
	"github.com/subhost/subhost/internal/testguest"
	"github.com/subhost/subhost/sdk/stagetest"
)

// binDir holds subhost and plugins/ (every stage plugin and subhost-init).
var binDir string

// subhostBin is binDir/subhost.
func subhostBin() string { return filepath.Join(binDir, "subhost") }

// logDir is where the supervisor writes a subhost's console log and its
// own log (cmd/subhost LogDir).
const logDir = "/var/log/subhost"

// cmdTimeout bounds every subhost command a test runs.
const cmdTimeout = 60 * time.Second

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		// stagetest.RequireRoot skips every test; building is not needed.
		os.Exit(m.Run())
	}
	if d := os.Getenv("SUBHOST_BIN"); d != "" {
		binDir = d
		os.Exit(m.Run())
	}
	dir, err := build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		if dir != "" {
			os.RemoveAll(dir)
		}
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build builds subhost and its plugins into a temporary directory with the
// Makefile's layout: the front as DIR/subhost, DIR/plugins/STAGE, and the
// full CLI (subhost-cli), subhost-init, subhost-launch and subhost-monitor
// (static, CGO off) in DIR/plugins.
func build() (string, error) {
	dir, err := os.MkdirTemp("", "subhost-e2e-bin-")
	if err != nil {
		return "", err
	}
	if err := testbin.Build(filepath.Join(dir, "subhost"), "./cmd/subhost-front"); err != nil {
		return dir, err
	}
	if err := testbin.Build(filepath.Join(dir, "plugins", "subhost-cli"), "./cmd/subhost"); err != nil {
		return dir, err
	}
	root, err := testbin.ModuleRoot()
	if err != nil {
		return dir, err
	}
	stages, err := filepath.Glob(filepath.Join(root, "plugins", "*"))
	if err != nil {
		return dir, err
	}
	for _, p := range stages {
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			continue
		}
		if err := testbin.Build(filepath.Join(dir, "plugins", filepath.Base(p)), "./plugins/"+filepath.Base(p)); err != nil {
			return dir, err
		}
	}
	for _, helper := range []string{"subhost-init", "subhost-launch", "subhost-monitor"} {
		if err := testbin.Build(filepath.Join(dir, "plugins", helper), "./cmd/"+helper); err != nil {
			return dir, err
		}
	}
	return dir, nil
}

// env is one test's world: its own --state-dir, its subhost names, and a
// cleanup that stops whatever it left running (after which NoLeaks, called
// first, checks the host).
type env struct {
	t     *testing.T
	state string // --state-dir, short: it holds unix sockets

	mu     sync.Mutex
	names  []string // subhosts made by name(), stopped at cleanup
	logged bool     // logs shown once, on failure
}

// newEnv starts a test that touches the host: root required, leak check
// first, a fresh state directory under /dev/shm.
func newEnv(t *testing.T) *env {
	t.Helper()
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	state, err := os.MkdirTemp("/dev/shm", "sh")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, state: state}
	t.Cleanup(func() { os.RemoveAll(state) })
	t.Cleanup(e.removeLogs)
	t.Cleanup(e.stopAll)
	return e
}

// name returns a fresh subhost name: tag (at most 5 characters) and 4 hex
// digits, at most 10 characters in all, since host veth names are NAME
// followed by the bridge index and must fit 15 bytes. Every name is
// stopped (forced) when the test ends, and its logs are removed (shown in
// the test log when the test failed).
func (e *env) name(tag string) string {
	e.t.Helper()
	if len(tag) > 5 {
		e.t.Fatalf("name tag %q: at most 5 characters", tag)
	}
	b := make([]byte, 2)
	rand.Read(b)
	n := tag + hex.EncodeToString(b)
	e.mu.Lock()
	e.names = append(e.names, n)
	e.mu.Unlock()
	return n
}

// netns makes a throwaway network namespace with bridge br0 (cidr on it)
// named after the test. Subhosts started in it are stopped before it is
// deleted.
// lastSubnet hands every test network of the package a /24 of its own:
// 198.18.S.0/24, S from 21 up, so that no two tests share addresses or
// the MACs derived from S (tests run one after another, but a leftover
// of one must never answer for another).
var lastSubnet atomic.Int32

func nextSubnet() int {
	s := 20 + int(lastSubnet.Add(1))
	if s > 254 {
		panic("e2e: out of test subnets in 198.18.0.0/16")
	}
	return s
}

// testnet is a fresh throwaway netns whose br0 is 198.18.S.1/24, and S.
func (e *env) testnet() (string, int) {
	e.t.Helper()
	s := nextSubnet()
	return e.netns(fmt.Sprintf("198.18.%d.1/24", s)), s
}

func (e *env) netns(cidr string) string {
	e.t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	ns := testguest.Netns(e.t, "e2e"+hex.EncodeToString(b), cidr)
	e.t.Cleanup(e.stopAll)
	return ns
}

// stopAll forces down every subhost this test named that is not stopped,
// then removes their logs. It runs at cleanup (more than once: it is
// idempotent).
func (e *env) stopAll() {
	e.mu.Lock()
	names := e.names
	e.mu.Unlock()
	for _, n := range names {
		if r, err := e.statusErr(n); err == nil && r.State != "stopped" {
			e.t.Logf("cleanup: %s is %s; stopping it", n, r.State)
			if out, errOut, code := e.run("stop", "--force", "--timeout", "5s", n); code != 0 {
				e.t.Errorf("cleanup: stop %s: exit %d: %s%s", n, code, out, errOut)
			}
		}
		if e.t.Failed() && !e.logged {
			for _, f := range []string{n + ".supervisor.log", n + ".log"} {
				if b, err := os.ReadFile(filepath.Join(logDir, f)); err == nil {
					e.t.Logf("%s:\n%s", f, tail(string(b), 4000))
				}
			}
		}
	}
	if e.t.Failed() {
		e.logged = true
	}
}

// removeLogs removes the logs of every name at the very end.
func (e *env) removeLogs() {
	for _, n := range e.names {
		for _, f := range []string{n + ".supervisor.log", n + ".log", n + ".log.1"} {
			os.Remove(filepath.Join(logDir, f))
		}
	}
}

// command builds `subhost --state-dir STATE ARGS...`, run under
// `nsenter --net=/run/netns/NS` when ns is not empty.
func (e *env) command(ctx context.Context, ns string, args ...string) *exec.Cmd {
	full := append([]string{"--state-dir", e.state}, args...)
	var cmd *exec.Cmd
	if ns != "" {
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + testguest.NetnsPath(ns), "--", subhostBin()}, full...)...)
	} else {
		cmd = exec.CommandContext(ctx, subhostBin(), full...)
	}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.WaitDelay = 5 * time.Second
	if len(args) > 0 && args[0] == "run" {
		// Whatever run brings up must come down before the test's other
		// cleanups remove its images, homes and namespaces.
		e.t.Cleanup(e.stopAll)
	}
	return cmd
}

// run runs subhost with args (bounded by cmdTimeout) and returns its
// output and exit code; -1 when it could not run or timed out.
func (e *env) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return e.inNet("", args...)
}

// inNet runs subhost under `nsenter --net=/run/netns/NS --`, like run.
func (e *env) inNet(ns string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := e.command(ctx, ns, args...)
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	code = exitCode(err)
	if ctx.Err() != nil {
		e.t.Errorf("subhost %s: timed out after %v", strings.Join(args, " "), cmdTimeout)
		code = -1
	}
	return o.String(), er.String(), code
}

// mustRun is run (in ns when not empty) that fails the test unless the
// exit code is 0; it returns stdout.
func (e *env) mustRun(ns string, args ...string) string {
	e.t.Helper()
	o, er, code := e.inNet(ns, args...)
	if code != 0 {
		e.t.Fatalf("subhost %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, o, er)
	}
	return o
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// bg is a background subhost command.
type bg struct {
	Cmd    *exec.Cmd
	Stdout stagetest.SyncBuffer
	Stderr stagetest.SyncBuffer
	done   chan struct{}
	err    error
}

// wait waits up to d for the command to end and returns its exit code;
// it fails the test on timeout.
func (b *bg) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-b.done:
		return exitCode(b.err)
	case <-time.After(d):
		t.Fatalf("%s did not end within %v\nstdout: %s\nstderr: %s", strings.Join(b.Cmd.Args, " "), d, b.Stdout.String(), b.Stderr.String())
		return -1
	}
}

// start starts subhost with args in the background (killed at cleanup if
// still running).
func (e *env) start(args ...string) *bg { return e.startIn("", args...) }

// startIn is start under `nsenter --net=/run/netns/NS` when ns is not empty.
func (e *env) startIn(ns string, args ...string) *bg {
	e.t.Helper()
	return e.startCmd(e.command(context.Background(), ns, args...))
}

// startCmd starts a command made by command (its environment perhaps
// added to) in the background, like start.
func (e *env) startCmd(cmd *exec.Cmd) *bg {
	e.t.Helper()
	b := &bg{Cmd: cmd, done: make(chan struct{})}
	b.Cmd.Stdout, b.Cmd.Stderr = &b.Stdout, &b.Stderr
	if err := b.Cmd.Start(); err != nil {
		e.t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	go func() { b.err = b.Cmd.Wait(); close(b.done) }()
	e.t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			b.Cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

// waitFor polls cond every 20 ms until it holds, failing the test with
// what after timeout.
func (e *env) waitFor(what string, timeout time.Duration, cond func() bool) {
	e.t.Helper()
	if !poll(timeout, cond) {
		e.t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// poll reports whether cond held within timeout.
func poll(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// report is one subhost as `status --json` and `list --json` print it
// (cmd/subhost/status.go).
type report struct {
	Name       string `json:"name"`
	Pipeline   string `json:"pipeline"`
	State      string `json:"state"`
	PID        int    `json:"pid"`
	Uptime     string `json:"uptime"`
	UptimeS    int64  `json:"uptime_s"`
	Home       string `json:"home"`
	Supervisor int    `json:"supervisor"`
	Error      string `json:"error"`
	Userns     *struct {
		Base, Size int
	} `json:"userns"`
	Stages []struct {
		Name   string `json:"name"`
		Plugin string `json:"plugin"`
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"stages"`
	Extra map[string]string `json:"extra"`
}

// status parses `subhost status --json NAME`, failing the test on error.
func (e *env) status(name string) report {
	e.t.Helper()
	r, err := e.statusErr(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) statusErr(name string) (report, error) {
	o, er, code := e.run("status", "--json", name)
	var r report
	if code != 0 {
		return r, fmt.Errorf("status --json %s: exit %d: %s", name, code, er)
	}
	if err := json.Unmarshal([]byte(o), &r); err != nil {
		return r, fmt.Errorf("status --json %s: %v: %q", name, err, o)
	}
	return r, nil
}

// home makes a subhost home directory (in a fresh t.TempDir) with config
// as HOME/config (root-owned, 0644, as the runner requires) and returns it.
func (e *env) home(config string) string {
	e.t.Helper()
	h := filepath.Join(e.t.TempDir(), "home")
	if err := os.Mkdir(h, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h, "config"), []byte(config+"\n"), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return h
}

// guestFile reads a file inside a running guest through `enter`.
func (e *env) guestFile(name, path string) (string, error) {
	o, er, code := e.run("enter", name, "--", "cat", path)
	if code != 0 {
		return "", fmt.Errorf("enter %s -- cat %s: exit %d: %s", name, path, code, strings.TrimSpace(er))
	}
	return o, nil
}

// guestHas reports whether path exists inside a running guest.
func (e *env) guestHas(name, path string) bool {
	_, _, code := e.run("enter", name, "--", "test", "-e", path)
	return code == 0
}

// clean fails the test unless nothing of subhost name is left: state
// stopped, no netns NAME, no state directory.
func (e *env) clean(name string) {
	e.t.Helper()
	e.waitFor(name+" to be stopped", 10*time.Second, func() bool {
		r, err := e.statusErr(name)
		return err == nil && r.State == "stopped"
	})
	e.waitFor("netns "+name+" to be deleted", 5*time.Second, func() bool {
		_, err := os.Lstat("/run/netns/" + name)
		return os.IsNotExist(err)
	})
}

// ptySession is a subhost command on a pseudo-terminal: what a user at a
// terminal sees and types.
type ptySession struct {
	t    *testing.T
	Cmd  *exec.Cmd
	tty  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

// startPty starts subhost with args (in ns when not empty) on a new pty;
// output is collected for expect. It is killed at cleanup if still running.
func (e *env) startPty(ns string, args ...string) *ptySession {
	e.t.Helper()
	return e.startCmdPty(e.command(context.Background(), ns, args...), "subhost "+strings.Join(args, " "))
}

// startCmdPty starts cmd (what, for messages) on a new pty, reading all it
// writes; it is killed at cleanup if it has not ended.
func (e *env) startCmdPty(cmd *exec.Cmd, what string) *ptySession {
	e.t.Helper()
	s := &ptySession{t: e.t, done: make(chan struct{}), Cmd: cmd}
	tty, err := pty.StartWithSize(s.Cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		e.t.Fatalf("start %s on a pty: %v", what, err)
	}
	s.tty = tty
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		s.err = s.Cmd.Wait()
		// Let the reader drain what the command wrote last.
		select {
		case <-readDone:
		case <-time.After(500 * time.Millisecond):
		}
		close(s.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.Cmd.Process.Kill()
			<-s.done
		}
		tty.Close()
	})
	return s
}

// Output is everything read from the pty so far.
func (s *ptySession) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// expect waits until the output (from offset from) contains want and
// returns the offset just after it; it fails the test on timeout.
func (s *ptySession) expect(from int, want string, timeout time.Duration) int {
	s.t.Helper()
	var at int
	ok := poll(timeout, func() bool {
		out := s.Output()
		if from > len(out) {
			from = len(out)
		}
		if i := strings.Index(out[from:], want); i >= 0 {
			at = from + i + len(want)
			return true
		}
		return false
	})
	if !ok {
		s.t.Fatalf("pty: no %q within %v; output so far:\n%s", want, timeout, tail(s.Output(), 2000))
	}
	return at
}

// send types text on the terminal.
func (s *ptySession) send(text string) {
	s.t.Helper()
	if _, err := io.WriteString(s.tty, text); err != nil {
		s.t.Fatalf("pty: write: %v", err)
	}
}

// wait waits up to d for the command to end and returns its exit code.
func (s *ptySession) wait(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
		return exitCode(s.err)
	case <-time.After(d):
		s.t.Fatalf("pty: %s did not end within %v; output:\n%s", strings.Join(s.Cmd.Args, " "), d, tail(s.Output(), 2000))
		return -1
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// dialIn dials addr from network namespace ns: the socket is created on a
// locked OS thread switched into ns (a socket belongs to the namespace it
// was created in), then the thread switches back. A thread that cannot
// switch back stays locked, so Go retires it.
func dialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	target, err := os.Open(testguest.NetnsPath(ns))
	if err != nil {
		return nil, err
	}
	defer target.Close()
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer self.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns %s: %w", ns, err)
	}
	// Dial creates the socket on this goroutine, hence this thread.
	conn, dialErr := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("setns back from %s: %w", ns, err) // thread stays locked: discarded
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}

// httpGet fetches url from network namespace ns (2 s timeout).
func httpGet(ns, url string) (string, error) {
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			Proxy:             nil,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialIn(ctx, ns, network, addr)
			},
		},
	}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}
