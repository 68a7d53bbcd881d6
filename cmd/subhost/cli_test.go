package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/settings"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/internal/testbin"
	"github.com/subhost/subhost/sdk/stagetest"
)

// binDir holds subhost built for the tests as a build tree holds it: the
// front (cmd/subhost-front) as subhost, which runs this package, built as
// plugins/subhost-cli, and the runner's test plugin beside it in plugins/.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "subhost-cli-test-")
	if err == nil {
		err = testbin.Build(filepath.Join(dir, "subhost"), "./cmd/subhost-front")
	}
	if err == nil {
		err = testbin.Build(filepath.Join(dir, "plugins", "subhost-cli"), "./cmd/subhost")
	}
	if err == nil {
		err = testbin.Build(filepath.Join(dir, "plugins", "teststage"), "./internal/teststage")
	}
	if err == nil {
		err = testbin.Build(filepath.Join(dir, "plugins", "subhost-monitor"), "./cmd/subhost-monitor")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli is one test's subhost: its own state directory and pipeline file.
type cli struct {
	t        *testing.T
	dir      string
	states   string
	pipeline string
	log      string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	states, err := os.MkdirTemp("", "shc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(states) })
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	return &cli{t: t, dir: dir, states: states, log: filepath.Join(dir, "calls.log")}
}

// writePipeline writes pipeline "p" with teststage stages; extra adds
// attribute lines to a stage.
func (c *cli) writePipeline(stages []string, extra map[string]string) {
	var b strings.Builder
	fmt.Fprintf(&b, "pipeline \"p\" {\n  home = %q\n", c.dir)
	for _, s := range stages {
		fmt.Fprintf(&b, "  stage %q {\n    plugin = \"teststage\"\n    log = %q\n    %s\n  }\n", s, c.log, extra[s])
	}
	b.WriteString("}\n")
	c.pipeline = filepath.Join(c.dir, "p.hcl")
	if err := os.WriteFile(c.pipeline, []byte(b.String()), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cli) cmd(args ...string) *exec.Cmd {
	// Logs go to the test's directory, not the host's /var/log/subhost.
	full := []string{"--state-dir", c.states, "--log-dir", filepath.Join(c.dir, "logs")}
	if c.pipeline != "" {
		full = append(full, "--pipeline-file", c.pipeline)
	}
	cmd := exec.Command(filepath.Join(binDir, "subhost"), append(full, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	return cmd
}

// run runs subhost to the end and returns its stdout, stderr and exit code.
func (c *cli) run(args ...string) (string, string, int) {
	c.t.Helper()
	cmd := c.cmd(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func (c *cli) mkhome(name, config string, mode os.FileMode) string {
	home := filepath.Join(c.dir, name)
	os.MkdirAll(home, 0o755)
	if err := os.WriteFile(filepath.Join(home, "config"), []byte(config), mode); err != nil {
		c.t.Fatal(err)
	}
	os.Chmod(filepath.Join(home, "config"), mode)
	return home
}

// waitFor polls until cond holds or fails the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// stateLeft lists what the state root holds but the root's own
// housekeeping, made once and kept: the plugins' socket directory and
// the boot ID of the kernel that last used the root.
func (c *cli) stateLeft() []string {
	entries, _ := os.ReadDir(c.states)
	var left []string
	for _, e := range entries {
		if e.Name() != ".plugins" && e.Name() != ".boot_id" {
			left = append(left, e.Name())
		}
	}
	return left
}

func (c *cli) stageStatus(name, stage string) string {
	st, err := state.Dir{Root: c.states, Name: name}.Load()
	if err != nil {
		return ""
	}
	for _, s := range st.Stages {
		if s.Name == stage {
			return s.Status
		}
	}
	return ""
}

func (c *cli) holder(name string) int {
	h, _ := state.Dir{Root: c.states, Name: name}.Holder()
	return h.PID
}

func (c *cli) calls(kind string) []string {
	data, _ := os.ReadFile(c.log)
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		stage, call, _ := strings.Cut(line, " ")
		if strings.HasPrefix(call, kind) {
			out = append(out, stage)
		}
	}
	return out
}

func TestBadInputIsOneLineExitTwoAndChangesNothing(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a"}, nil)
	probe := filepath.Join(c.dir, "pwned")
	insecure := filepath.Join(c.dir, "insecure-plugins")
	os.MkdirAll(insecure, 0o755)
	data, _ := os.ReadFile(filepath.Join(binDir, "plugins", "teststage"))
	os.WriteFile(filepath.Join(insecure, "teststage"), data, 0o777)
	os.Chmod(filepath.Join(insecure, "teststage"), 0o777)
	badHCL := filepath.Join(c.dir, "bad.hcl")
	os.WriteFile(badHCL, []byte("pipeline \"q\" {\n  home = \"/x\"\n  stage \"a\" {\n}\n"), 0o644)
	unknownPlugin := filepath.Join(c.dir, "unknown.hcl")
	os.WriteFile(unknownPlugin, []byte("pipeline \"q\" {\n  home = \"/x\"\n  stage \"a\" { plugin = \"nosuchplugin\" }\n}\n"), 0o644)
	pinned := filepath.Join(c.dir, "pinned.hcl")
	os.WriteFile(pinned, []byte(fmt.Sprintf("pipeline \"q\" {\n  home = %q\n  stage \"a\" {\n    plugin = \"teststage\"\n    sha256 = %q\n  }\n}\n", c.dir, strings.Repeat("0", 64))), 0o644)
	symlinked := c.mkhome("symlinked", "X=1\n", 0o644)
	os.Remove(filepath.Join(symlinked, "config"))
	os.Symlink(filepath.Join(c.dir, "ok", "config"), filepath.Join(symlinked, "config"))
	c.mkhome("ok", "X=1\n", 0o644)
	notRoot := c.mkhome("notroot", "X=1\n", 0o644)
	os.Chown(filepath.Join(notRoot, "config"), 65534, 65534)

	refused := filepath.Join(c.dir, "refused.hcl")
	os.WriteFile(refused, []byte(fmt.Sprintf("pipeline \"q\" {\n  home = %q\n  stage \"a\" {\n    plugin = \"teststage\"\n    log = %q\n    behavior = \"invalid\"\n  }\n}\n", c.dir, c.log)), 0o644)

	for _, tc := range []struct {
		name   string
		config string // a config for subhost "x" (mode 0644) unless empty
		args   []string
		want   string // in the error line
	}{
		{"command substitution", "DISKS=( $(touch " + probe + ") )\n", nil, "config:1:"},
		{"backquotes", "X=`touch " + probe + "`\n", nil, "config:1:"},
		{"process substitution", "X=<(touch " + probe + ")\n", nil, "config:1:"},
		{"unbalanced parens", "X=1\nDISKS=( vda:1:/x\n", nil, "config:"},
		{"glob", "DISKS=( /disks/*.raw )\n", nil, "config:1:"},
		{"function", "f() { touch " + probe + "; }\n", nil, "config:1:"},
		{"control flow", "if true; then X=1; fi\n", nil, "config:1:"},
		{"arithmetic", "X=$((1+2))\n", nil, "config:1:"},
		{"a command", "touch " + probe + "\n", nil, "config:1:"},
		{"world-writable config", "", []string{"run", "--pipeline", "p", "--home", filepath.Join(c.dir, "ww"), "ww"}, "writable"},
		{"symlinked config", "", []string{"run", "--pipeline", "p", "--home", symlinked, "symlinked"}, "symlink"},
		{"config not owned by root", "", []string{"run", "--pipeline", "p", "--home", notRoot, "notroot"}, "owned by"},
		{"name ../x", "", []string{"run", "--pipeline", "p", "--", "../x"}, "../x"},
		{"empty name", "", []string{"run", "--pipeline", "p", "--", ""}, "name"},
		{"long name", "", []string{"run", "--pipeline", "p", strings.Repeat("a", 40)}, "name"},
		{"name -rf", "", []string{"run", "--pipeline", "p", "--", "-rf"}, "-rf"},
		{"unknown pipeline", "", []string{"run", "--pipeline", "nope", "x"}, `unknown pipeline "nope"`},
		{"unknown stage plugin", "", []string{"--pipeline-file", unknownPlugin, "run", "--pipeline", "q", "x"}, "nosuchplugin"},
		{"pipeline file syntax", "", []string{"--pipeline-file", badHCL, "run", "--pipeline", "q", "x"}, "bad.hcl:"},
		{"insecure plugin", "", []string{"--plugin-dir", insecure, "run", "--pipeline", "p", "--home", filepath.Join(c.dir, "ok"), "x"}, "writable"},
		{"checksum mismatch", "", []string{"--pipeline-file", pinned, "run", "--pipeline", "q", "--home", filepath.Join(c.dir, "ok"), "x"}, "sha256"},
		{"a stage refuses", "", []string{"--pipeline-file", refused, "run", "--pipeline", "q", "--home", filepath.Join(c.dir, "ok"), "x"}, "invalid on request"},
		// Only HOME/config may be missing (DISKS and BRIDGES then come
		// from the environment): a file named by hand must be there.
		{"missing --config", "", []string{"run", "--pipeline", "p", "--config", "/nonexistent/config", "x"}, "--config /nonexistent/config: no such file"},
		{"unknown flag", "", []string{"run", "--no-such-flag", "x"}, "no-such-flag"},
		{"unknown command", "", []string{"rnu", "x"}, `unknown command "rnu"; did you mean run?`},
		{"unknown command, nothing near", "", []string{"frobnicate", "x"}, `unknown command "frobnicate" for "subhost"`},
		{"unknown image command", "", []string{"image", "biuld"}, `unknown command "biuld"; did you mean build?`},
		{"unknown image command, nothing near", "", []string{"image", "frobnicate"}, `unknown command "frobnicate" for "subhost image"`},
	} {
		// --detach: the front has the full CLI make the plan as the
		// supervisor-to-be, which must report it the same way.
		for _, detach := range []bool{false, true} {
			name := tc.name
			if detach {
				name += " detached"
			}
			t.Run(name, func(t *testing.T) {
				c.badInput(t, tc.config, tc.args, detach, tc.want, probe)
			})
		}
	}
}

// badInput runs subhost with args (or, for a config, run x with it) and
// checks that it fails as bad input, with nothing changed: no log either,
// also when a supervisor found it (a plugin's checks, a stage's
// Validate).
func (c *cli) badInput(t *testing.T, config string, args []string, detach bool, want, probe string) {
	if config != "" {
		home := c.mkhome("x", config, 0o644)
		args = []string{"run", "--pipeline", "p", "--home", home, "x"}
	}
	if i := slices.Index(args, "run"); detach && i >= 0 {
		args = slices.Insert(slices.Clone(args), i+1, "-d")
	}
	c.mkhome("ww", "X=1\n", 0o666)
	logs := filepath.Join(c.dir, "logs")
	logsBefore, _ := os.ReadDir(logs)
	_, stderr, code := c.run(args...)
	if code != 2 {
		t.Errorf("exit %d, want 2; stderr:\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if !strings.HasPrefix(lines[0], "subhost: ") || !strings.Contains(lines[0], want) {
		t.Errorf("error line %q does not name %q", lines[0], want)
	}
	if len(lines) > 1 && !strings.HasPrefix(lines[1], "Run '") {
		t.Errorf("more than one line of error:\n%s", stderr)
	}
	if _, err := os.Stat(probe); err == nil {
		os.Remove(probe)
		t.Errorf("the config was executed")
	}
	if left := c.stateLeft(); len(left) > 0 {
		t.Errorf("state left behind: %v", left)
	}
	// Bad input leaves no log: the supervisor opens its logs only when
	// its boot begins (supervisor.PendingLog).
	if logsAfter, _ := os.ReadDir(logs); len(logsAfter) > len(logsBefore) {
		t.Errorf("log written: %v", logsAfter)
	}
	if got := c.calls("up"); len(got) > 0 {
		t.Errorf("a stage came up: %v", got)
	}
}

// run --supervise (subhost@NAME.service) takes the pipeline and home from
// the enrolment: one it cannot read is bad input naming the file and
// line, as autostart start reports it, not a boot with the defaults.
func TestSuperviseRefusesABadEnrolment(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a"}, nil)
	etc := filepath.Join(c.dir, "etc")
	os.MkdirAll(filepath.Join(etc, "autostart"), 0o755)
	enrolment := filepath.Join(etc, "autostart", "x")
	os.WriteFile(enrolment, []byte("pipeline=p\norder=first\n"), 0o644)
	c.badInput(t, "", []string{"--etc-dir", etc, "run", "--supervise", "x"}, false, enrolment+":2: order", filepath.Join(c.dir, "pwned"))
}

// TestRunStatusListStop runs a pipeline without a guest in the foreground
// and detached (where the front has the full CLI become the supervisor).
func TestRunStatusListStop(t *testing.T) {
	t.Run("foreground", func(t *testing.T) { testRunStatusListStop(t) })
	t.Run("detached", func(t *testing.T) { testRunStatusListStop(t, "--detach") })
}

func testRunStatusListStop(t *testing.T, flags ...string) {
	c := newCLI(t)
	c.writePipeline([]string{"a", "b"}, nil)
	hostLog, _ := os.Stat(filepath.Join(settings.DefaultLogDir, "web1.supervisor.log"))
	out, stderr, code := c.run(append(append([]string{"run"}, flags...), "--pipeline", "p", "web1")...)
	if code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, out, stderr)
	}
	if want := "subhost web1 is running (its pipeline launches no guest)\n"; out != want || stderr != "" {
		t.Errorf("run printed %q and %q on standard error, want %q", out, stderr, want)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "logs", "web1.supervisor.log")); err != nil {
		t.Errorf("the supervisor's log is not in --log-dir: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(settings.DefaultLogDir, "web1.supervisor.log")); fi != nil && (hostLog == nil || fi.ModTime() != hostLog.ModTime()) {
		t.Errorf("the supervisor wrote to %s despite --log-dir", fi.Name())
	}
	out, _, _ = c.run("status", "--json", "web1")
	var rep report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.State != state.Running || len(rep.Stages) != 2 || rep.Pipeline != "p" {
		t.Errorf("status --json: %v\n%s", err, out)
	}
	out, _, _ = c.run("list", "--json")
	if !strings.Contains(out, `"name": "web1"`) {
		t.Errorf("list --json: %s", out)
	}
	want := "subhost: subhost web1 has no guest: its pipeline launches none\n"
	if _, stderr, code := c.run("console", "web1"); code != 1 || stderr != want {
		t.Errorf("console of a subhost without a guest: exit %d, %q, want %q", code, stderr, want)
	}
	if out, stderr, code := c.run("stop", "web1"); code != 0 {
		t.Fatalf("stop: exit %d\n%s%s", code, out, stderr)
	}
	out, _, _ = c.run("status", "web1")
	if !strings.Contains(out, "stopped") {
		t.Errorf("status after stop: %s", out)
	}
	if _, stderr, code := c.run("console", "web1"); code != 1 || stderr != "subhost: subhost web1 is not running\n" {
		t.Errorf("console of a stopped subhost: exit %d, %q", code, stderr)
	}
	if got := strings.Join(c.calls("down"), ","); got != "b,a" {
		t.Errorf("down calls %s", got)
	}
}

// stop --timeout must be positive, as autostart stop's is: a refused one
// leaves the subhost running, every stage up.
func TestStopRefusesATimeoutThatIsNotPositive(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a"}, nil)
	if _, stderr, code := c.run("run", "--pipeline", "p", "t"); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, stderr)
	}
	t.Cleanup(func() { c.run("stop", "t") })
	for _, timeout := range []string{"0", "0s", "-5s"} {
		_, stderr, code := c.run("stop", "--timeout", timeout, "t")
		if line, _, _ := strings.Cut(stderr, "\n"); code != 2 || !strings.Contains(line, "--timeout") {
			t.Errorf("stop --timeout %s: exit %d, want 2 naming --timeout; stderr:\n%s", timeout, code, stderr)
		}
	}
	// autostart stop's may also be empty (each guest's own), but not
	// zero, negative or no duration at all.
	for _, timeout := range []string{"--timeout=0", "--timeout=-5s", "--timeout=lots"} {
		_, stderr, code := c.run("autostart", "stop", timeout)
		if line, _, _ := strings.Cut(stderr, "\n"); code != 2 || !strings.Contains(line, `for "--timeout" flag`) {
			t.Errorf("autostart stop %s: exit %d, want 2 naming --timeout; stderr:\n%s", timeout, code, stderr)
		}
	}
	if got := c.calls("down"); len(got) > 0 || c.stageStatus("t", "a") != state.StageUp {
		t.Errorf("a refused stop changed the subhost: downs %v, stage a %q", got, c.stageStatus("t", "a"))
	}
}

// One subhost's state that this build cannot read (here a newer schema)
// is one line on standard error and a non-zero exit at the end: list and
// autostart list and status still show the others, and autostart stop,
// at host shutdown, still stops them.
func TestOneUnreadableStateDoesNotHideTheOthers(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a"}, nil)
	etc := filepath.Join(c.dir, "etc")
	os.MkdirAll(filepath.Join(etc, "autostart"), 0o755)
	for _, name := range []string{"good", "newer"} {
		if _, stderr, code := c.run("run", "--pipeline", "p", name); code != 0 {
			t.Fatalf("run %s: exit %d\n%s", name, code, stderr)
		}
		t.Cleanup(func() { c.run("stop", name) })
		os.WriteFile(filepath.Join(etc, "autostart", name), []byte("pipeline=p\norder=1\n"), 0o644)
	}
	path := filepath.Join(c.states, "newer", "state.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	newer := strings.Replace(string(data), `"schema":1,`, `"schema":99,`, 1)
	if newer == string(data) {
		t.Fatalf("no schema in %s", data)
	}
	os.WriteFile(path, []byte(newer), 0o600)
	t.Cleanup(func() { os.WriteFile(path, data, 0o600) }) // so that it can be stopped

	reportsTheOne := func(what, stderr string) {
		t.Helper()
		if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 || !strings.Contains(lines[0], path) {
			t.Errorf("%s: want one line naming %s on standard error, got:\n%s", what, path, stderr)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"list"}, 1},
		{[]string{"list", "--json"}, 1},
		{[]string{"--etc-dir", etc, "autostart", "list"}, 1},
		{[]string{"--etc-dir", etc, "autostart", "list", "--json"}, 1},
		{[]string{"--etc-dir", etc, "autostart", "status"}, 4}, // LSB: status unknown
	} {
		what := strings.Join(tc.args, " ")
		out, stderr, code := c.run(tc.args...)
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d", what, code, tc.code)
		}
		if !strings.Contains(out, "good") || strings.Contains(out, "newer") {
			t.Errorf("%s: want good listed and newer not, got:\n%s", what, out)
		}
		reportsTheOne(what, stderr)
	}

	out, stderr, code := c.run("--etc-dir", etc, "autostart", "stop", "--total", "30s")
	if code != 1 {
		t.Errorf("autostart stop: exit %d, want 1", code)
	}
	if _, err := (state.Dir{Root: c.states, Name: "good"}).Load(); !errors.Is(err, state.ErrNoState) || !strings.Contains(out, "subhost good stopped") {
		t.Errorf("autostart stop did not stop good (state: %v); it printed:\n%s", err, out)
	}
	if got, _ := os.ReadFile(path); string(got) != newer {
		t.Errorf("autostart stop changed the unreadable state: %s", got)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "subhost newer: FAILED to stop: "+path) || !strings.Contains(lines[1], "1 of 2") {
		t.Errorf("autostart stop: want newer's failure and the count on standard error, got:\n%s", stderr)
	}
}

// TestRelativeLogDir: a relative --log-dir names a directory below the
// caller's working directory, however long the supervisor runs.
func TestRelativeLogDir(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a"}, nil)
	cmd := c.cmd("--log-dir", "rel", "run", "--pipeline", "p", "rl")
	cmd.Dir = c.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "rel", "rl.supervisor.log")); err != nil {
		t.Errorf("the supervisor's log is not below the caller's directory: %v", err)
	}
	if out, stderr, code := c.run("stop", "rl"); code != 0 {
		t.Fatalf("stop: exit %d\n%s%s", code, out, stderr)
	}
}

// TestUnusableLogDir: a --log-dir that cannot be a directory fails the run
// with one line naming it, before any stage comes up or state is kept.
func TestUnusableLogDir(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a"}, nil)
	file := filepath.Join(c.dir, "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := c.run("--log-dir", file, "run", "--pipeline", "p", "bl")
	if code == 0 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "--log-dir") || !strings.Contains(stderr, file) {
		t.Errorf("run with --log-dir %s: exit %d, want one line naming it\n%s%s", file, code, out, stderr)
	}
	if got := c.calls("up"); len(got) > 0 {
		t.Errorf("a stage came up: %v", got)
	}
	if left := c.stateLeft(); len(left) > 0 {
		t.Errorf("state left behind: %v", left)
	}
}

func TestStageCommandPrintsRequestAndResult(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a", "b"}, nil)
	out, stderr, code := c.run("stage", "b", "up", "--pipeline", "p", "dbg")
	if code != 0 {
		t.Fatalf("stage up: exit %d\n%s", code, stderr)
	}
	var rep struct {
		Request struct{ Stage string }
		Result  struct {
			Record struct{ Extra map[string]string }
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Request.Stage != "b" || rep.Result.Record.Extra["b"] != "up" {
		t.Errorf("stage up printed %s (%v)", out, err)
	}
	if _, stderr, code := c.run("stage", "b", "check", "--pipeline", "p", "dbg"); code != 0 {
		t.Errorf("check: %s", stderr)
	}
	if _, stderr, code := c.run("stage", "b", "down", "--pipeline", "p", "dbg"); code != 0 {
		t.Errorf("down: %s", stderr)
	}
	if _, _, code := c.run("stage", "b", "check", "--pipeline", "p", "dbg"); code == 0 {
		t.Errorf("check after down succeeded")
	}
}

// A config recorded at boot and gone since is not one named with
// --config: stage still runs against the subhost, its variables from the
// environment, as with a missing HOME/config.
func TestStageWithTheRecordedConfigGone(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a"}, nil)
	home := c.mkhome("gone", "X=1\n", 0o644)
	if _, stderr, code := c.run("run", "--pipeline", "p", "--config", filepath.Join(home, "config"), "gone"); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, stderr)
	}
	t.Cleanup(func() { c.run("stop", "gone") })
	os.Remove(filepath.Join(home, "config"))
	if _, stderr, code := c.run("stage", "a", "check", "gone"); code != 0 {
		t.Errorf("stage check with the recorded config gone: exit %d\n%s", code, stderr)
	}
}

func TestRunnerKilledWhileStagePendingThenStopCleansUp(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a", "b", "c"}, map[string]string{"b": `behavior = "hang"` + "\n    timeout = \"5m\""})
	run := c.cmd("run", "--pipeline", "p", "crash")
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer run.Wait()
	waitFor(t, 20*time.Second, "stage b pending", func() bool { return c.stageStatus("crash", "b") == state.StagePending })
	worker := c.holder("crash")
	if worker == 0 {
		t.Fatal("no lock holder")
	}
	syscall.Kill(worker, syscall.SIGKILL)
	// kill returns before the process has exited (and let go of its lock)
	// on a loaded machine: wait until it is a zombie or gone.
	waitFor(t, 10*time.Second, "the killed runner to exit", func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", worker))
		if err != nil {
			return true
		}
		_, after, _ := bytes.Cut(stat, []byte(") "))
		return len(after) > 0 && (after[0] == 'Z' || after[0] == 'X')
	})
	waitFor(t, 10*time.Second, "the killed runner's plugins to die", func() bool {
		out, _ := exec.Command("pgrep", "-f", "teststage").Output()
		return len(bytes.TrimSpace(out)) == 0
	})
	// The state still says booting; status and list say what it is.
	if out, _, _ := c.run("status", "crash"); !strings.HasPrefix(out, "crash: failed") || !strings.Contains(out, "its boot was interrupted") {
		t.Errorf("status of a subhost whose boot was killed:\n%s", out)
	}
	out, stderr, code := c.run("stop", "crash")
	if code != 0 {
		t.Fatalf("stop after a crash: exit %d\n%s%s", code, out, stderr)
	}
	if got := strings.Join(c.calls("down"), ","); got != "b,a" {
		t.Errorf("down calls %q, want b,a", got)
	}
	if _, err := os.Stat(filepath.Join(c.states, "crash")); err == nil {
		t.Errorf("state left")
	}
}

func TestConcurrentRunsOneProceedsOtherNamesHolder(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a"}, map[string]string{"a": `behavior = "hang"` + "\n    timeout = \"5m\""})
	first := c.cmd("run", "--pipeline", "p", "twice")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "stage a pending", func() bool { return c.stageStatus("twice", "a") == state.StagePending })
	worker := c.holder("twice")
	start := time.Now()
	_, stderr, code := c.run("run", "--pipeline", "p", "twice")
	if code != 1 || !strings.Contains(stderr, "pid "+strconv.Itoa(worker)+" (run)") {
		t.Errorf("second run: exit %d, stderr %q; want 1 naming pid %d (run)", code, stderr, worker)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the second run took %s", d)
	}
	// Interrupting the first rolls it back.
	first.Process.Signal(syscall.SIGINT)
	first.Wait()
	waitFor(t, 20*time.Second, "rollback", func() bool {
		_, err := os.Stat(filepath.Join(c.states, "twice", "state.json"))
		return os.IsNotExist(err)
	})
	if got := strings.Join(c.calls("down"), ","); got != "a" {
		t.Errorf("down calls %q", got)
	}
}

func TestCompatNames(t *testing.T) {
	for _, tc := range []struct {
		argv0 string
		args  []string
		want  string
	}{
		{"pretend-boot", []string{"web"}, "run --pipeline pretend-boot web"},
		{"control", []string{"start", "web"}, "run --pipeline control web"},
		{"control", []string{"stop", "web"}, "stop web"},
		{"control", []string{"frob"}, "control-usage frob"},
		{"subhost", []string{"list"}, "list"},
	} {
		if got := strings.Join(compatArgs(tc.argv0, tc.args), " "); got != tc.want {
			t.Errorf("%s %v: got %q, want %q", tc.argv0, tc.args, got, tc.want)
		}
	}
}

func TestConfigShowsWhatTheParserReads(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a"}, nil)
	home := c.mkhome("web1", "IMG=/disks\nDISKS=( vda:1:$IMG/a.raw 'b c' )\n", 0o644)
	out, stderr, code := c.run("config", "--json", "--pipeline", "p", "web1")
	if code != 0 {
		t.Fatalf("config: exit %d\n%s", code, stderr)
	}
	var rep configReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	d := rep.Vars["DISKS"]
	if !rep.Exists || rep.Home != home || rep.Config != filepath.Join(home, "config") || rep.Pipeline != "p" ||
		!d.IsArray || strings.Join(d.Words, "|") != "vda:1:/disks/a.raw|b c" {
		t.Errorf("config --json: %s", out)
	}

	out, _, code = c.run("config", "--json", "--pipeline", "p", "--home", filepath.Join(c.dir, "none"), "web2")
	if code != 0 || !strings.Contains(out, `"exists": false`) {
		t.Errorf("missing config: exit %d, %s", code, out)
	}

	c.mkhome("bad", "X=$(id)\n", 0o644)
	_, stderr, code = c.run("config", "--pipeline", "p", "bad")
	if code != 2 || !strings.Contains(stderr, "config:1:3: command substitution") {
		t.Errorf("bad config: exit %d, %s", code, stderr)
	}
}

// status --json shows the config a subhost was brought up with, which it
// runs with until stopped: an edit of the file since is not in it (the
// Ansible module compares the two to know a restart is due). list --json
// leaves it out, as it leaves out the stages.
func TestStatusShowsTheConfigOfTheBoot(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a"}, nil)
	home := c.mkhome("web1", "NOTE=one\nDISKS=( vda:1:/d/a.raw )\n", 0o644)
	if _, stderr, code := c.run("run", "--pipeline", "p", "web1"); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, stderr)
	}
	t.Cleanup(func() { c.run("stop", "web1") })
	c.mkhome("web1", "NOTE=two\n", 0o644)
	out, _, _ := c.run("status", "--json", "web1")
	var rep report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Config == nil {
		t.Fatalf("status --json: no config: %v\n%s", err, out)
	}
	note, disks := rep.Config.Vars["NOTE"], rep.Config.Vars["DISKS"]
	if rep.Config.File != filepath.Join(home, "config") || len(rep.Config.Vars) != 2 ||
		!slices.Equal(note.Words, []string{"one"}) || note.IsArray || !slices.Equal(disks.Words, []string{"vda:1:/d/a.raw"}) || !disks.IsArray {
		t.Errorf("status --json: config is %+v, want the file's at boot: NOTE=one, DISKS=( vda:1:/d/a.raw )", rep.Config)
	}
	if out, _, _ := c.run("list", "--json"); strings.Contains(out, `"config"`) || !strings.Contains(out, `"web1"`) {
		t.Errorf("list --json: %s", out)
	}
}

// describe says how a stage uses the boot record: whether its Up may run
// beside others in a boot.
func TestDescribeSaysHowTheBootRecordIsUsed(t *testing.T) {
	c := newCLI(t)
	out, errOut, code := c.run("describe", "teststage")
	if code != 0 || !strings.Contains(out, "\nboot record: declares no use, so its Up runs alone\n") {
		t.Errorf("describe teststage: exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}
}

// TestSupervisorLogOpensWithTheBoot: the supervisor holds what it logs
// until its first stage comes up, then writes it to its log; a boot
// refused before that shows it on standard error when asked (-vv), and a
// run refused because another holds the subhost leaves that one's log
// alone.
func TestSupervisorLogOpensWithTheBoot(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a", "b"}, map[string]string{"b": `behavior = "hang"` + "\n    timeout = \"5m\""})
	refused := filepath.Join(c.dir, "refused.hcl")
	os.WriteFile(refused, []byte(fmt.Sprintf("pipeline \"q\" {\n  home = %q\n  stage \"a\" {\n    plugin = \"teststage\"\n    log = %q\n    behavior = \"invalid\"\n  }\n}\n", c.dir, c.log)), 0o644)
	for _, mode := range []string{"-d", "--supervise"} {
		_, stderr, code := c.run("--pipeline-file", refused, "-vv", "run", mode, "--pipeline", "q", "web1")
		if code != 2 || !strings.Contains(stderr, "[DEBUG] subhost.a: plugin started") || !strings.HasSuffix(stderr, "invalid on request\n") {
			t.Errorf("run %s -vv, refused: exit %d, stderr:\n%s\nwant exit 2, the debug lines held, then the error", mode, code, stderr)
		}
		if entries, _ := os.ReadDir(filepath.Join(c.dir, "logs")); len(entries) > 0 {
			t.Errorf("run %s, refused: logs written: %v", mode, entries)
		}
	}

	// A boot that hangs in stage b's Up holds web1.
	run := c.cmd("-vv", "run", "-d", "--pipeline", "p", "web1")
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "stage b pending", func() bool { return c.stageStatus("web1", "b") == state.StagePending })
	supLog := filepath.Join(c.dir, "logs", "web1.supervisor.log")
	before, _ := os.ReadFile(supLog)
	validated := strings.Index(string(before), "stage=a call=validate")
	up := strings.Index(string(before), "stage=a call=up")
	if validated < 0 || up < validated {
		t.Errorf("the log does not have stage a's validation (held) before its Up:\n%s", before)
	}
	if _, stderr, code := c.run("run", "-d", "--pipeline", "p", "web1"); code == 0 || !strings.Contains(stderr, "holds its lock") {
		t.Errorf("a second run: exit %d, %s", code, stderr)
	}
	if after, _ := os.ReadFile(supLog); !bytes.Equal(after, before) {
		t.Errorf("a second run wrote to the first one's log:\n%s", after[len(before):])
	}
	run.Process.Signal(syscall.SIGINT) // the front passes it on: the boot rolls back
	run.Wait()
	waitFor(t, 20*time.Second, "web1 rolled back", func() bool {
		_, err := state.Dir{Root: c.states, Name: "web1"}.Load()
		return errors.Is(err, state.ErrNoState)
	})
}
