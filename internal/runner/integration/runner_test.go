// Package integration tests the runner with real stage plugins: a test
// plugin built as the shipped ones are, started over go-plugin. The
// runner's own logic is tested in-process, without root, in its package.
package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/pipeline"
	"github.com/subhost/subhost/internal/pluginhost"
	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/internal/settings"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/internal/testbin"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// pluginDir holds the test plugin, built once.
var pluginDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "subhost-runner-test-")
	if err == nil {
		err = testbin.Build(filepath.Join(dir, "teststage"), "./internal/teststage")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fixture is a runner with its own state directory, a pipeline file and a
// call log.
type fixture struct {
	t      testing.TB
	r      *runner.Runner
	log    string
	home   string
	states string
}

// newFixture writes a pipeline "p" of the given stages; behaviors maps a
// stage to its misbehaviour parameters (HCL attribute lines).
func newFixture(t *testing.T, stages []string, extra map[string]string) *fixture {
	t.Helper()
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	return makeFixture(t, stages, extra)
}

func newBenchFixture(b *testing.B, stages []string) *fixture {
	stagetest.RequireRoot(b)
	return makeFixture(b, stages, nil)
}

func makeFixture(t testing.TB, stages []string, extra map[string]string) *fixture {
	dir := t.TempDir()
	// State (and go-plugin's sockets in it) lives under a short path: a
	// unix socket path has at most 107 bytes.
	states, err := os.MkdirTemp(stateTmp, "sht")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(states) })
	f := &fixture{t: t, log: filepath.Join(dir, "calls.log"), home: filepath.Join(dir, "home"), states: states}
	var b strings.Builder
	fmt.Fprintf(&b, "pipeline \"p\" {\n  home = %q\n", dir)
	for _, s := range stages {
		timeout := "timeout = \"3s\""
		if strings.Contains(extra[s], "timeout") {
			timeout = ""
		}
		fmt.Fprintf(&b, "  stage %q {\n    plugin = \"teststage\"\n    log = %q\n    %s\n    %s\n  }\n", s, f.log, timeout, extra[s])
	}
	b.WriteString("}\n")
	file := filepath.Join(dir, "p.hcl")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var set *pipeline.Set
	set, err = pipeline.Load(pipeline.LoadOptions{Dirs: []string{}, Files: []string{file}})
	if err != nil {
		t.Fatal(err)
	}
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr})
	f.r = &runner.Runner{
		Pipelines: set,
		Stages: settings.PluginStages{Host: &pluginhost.Host{
			Dirs: []string{pluginDir}, SocketDir: filepath.Join(f.states, ".plugins"), Logger: logger, LogLevel: "warn",
		}},
		StateRoot: f.states,
		Logger:    logger,
		Getenv:    func(string) (string, bool) { return "", false },
	}
	return f
}

func (f *fixture) plan(name string) *runner.Plan {
	f.t.Helper()
	plan, err := f.r.MakePlan(runner.Target{Name: name, Pipeline: "p", Home: f.home})
	if err != nil {
		f.t.Fatal(err)
	}
	return plan
}

// calls returns the log's lines for one kind of call ("up", "down").
func (f *fixture) calls(kind string) []string {
	data, _ := os.ReadFile(f.log)
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		stage, call, _ := strings.Cut(line, " ")
		if strings.HasPrefix(call, kind) {
			out = append(out, stage)
		}
	}
	return out
}

func (f *fixture) noState(name string) {
	f.t.Helper()
	if _, err := os.Stat(filepath.Join(f.states, name)); !errors.Is(err, os.ErrNotExist) {
		f.t.Errorf("state for %s left behind (%v)", name, err)
	}
}

func TestRunUpInOrderStopDownInReverse(t *testing.T) {
	f := newFixture(t, []string{"a", "b", "c", "d"}, nil)
	st, err := f.r.Run(context.Background(), f.plan("four"), runner.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.calls("up"); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("Up order %v", got)
	}
	data, _ := os.ReadFile(f.log)
	if !strings.Contains(string(data), "d up saw=a,b,c\n") {
		t.Errorf("the boot record was not passed along:\n%s", data)
	}
	if st.Status != state.Running || len(st.Record.Extra) != 4 {
		t.Errorf("state after run: %+v", st)
	}
	if err := f.r.Stop(context.Background(), "four", runner.StopOptions{Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if got := f.calls("down"); !slices.Equal(got, []string{"d", "c", "b", "a"}) {
		t.Errorf("Down order %v", got)
	}
	f.noState("four")
	if err := f.r.Stop(context.Background(), "four", runner.StopOptions{}); !errors.Is(err, runner.ErrNotRunning) {
		t.Errorf("second stop: %v", err)
	}
}

func TestFailureAtEachStageRollsBackInReverse(t *testing.T) {
	stages := []string{"a", "b", "c", "d"}
	for i, failing := range stages {
		for _, behavior := range []string{"fail", "exit", "panic", "hang"} {
			if behavior != "fail" && i != 1 {
				continue // crashes and hangs: one position is enough
			}
			t.Run(failing+"-"+behavior, func(t *testing.T) {
				f := newFixture(t, stages, map[string]string{failing: fmt.Sprintf("behavior = %q", behavior)})
				start := time.Now()
				_, err := f.r.Run(context.Background(), f.plan("rb"), runner.RunOptions{})
				if err == nil {
					t.Fatal("run succeeded")
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("stage %q", failing)) {
					t.Errorf("error does not name the stage: %v", err)
				}
				if time.Since(start) > 30*time.Second {
					t.Errorf("rollback took %s", time.Since(start))
				}
				want := slices.Clone(stages[:i+1])
				slices.Reverse(want)
				if got := f.calls("down"); !slices.Equal(got, want) {
					t.Errorf("Down calls %v, want %v", got, want)
				}
				f.noState("rb")
			})
		}
	}
}

func TestValidationFailureChangesNothing(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, map[string]string{"b": `behavior = "invalid"`})
	_, err := f.r.Run(context.Background(), f.plan("inv"), runner.RunOptions{})
	if !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Fatalf("want an invalid-config error, got %v", err)
	}
	if got := f.calls("up"); len(got) != 0 {
		t.Errorf("Up was called after a failed validation: %v", got)
	}
	f.noState("inv")
}

func TestInterruptRollsBack(t *testing.T) {
	f := newFixture(t, []string{"a", "b", "c"}, map[string]string{"b": "behavior = \"hang\"\n    timeout = \"1m\""})
	f.r.InterruptGrace = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(time.Second, cancel)
	_, err := f.r.Run(ctx, f.plan("intr"), runner.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("want an interrupted error, got %v", err)
	}
	if got := f.calls("down"); !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("Down calls %v", got)
	}
	f.noState("intr")
}

// A stage that finishes its Up after the interrupt is recorded and taken
// down: what it made (say, a launched guest) is not lost.
func TestInterruptDuringUpKeepsItsResultForRollback(t *testing.T) {
	f := newFixture(t, []string{"a", "b", "c"}, map[string]string{"b": "behavior = \"slow\""})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	_, err := f.r.Run(ctx, f.plan("slow"), runner.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("want an interrupted error, got %v", err)
	}
	if got := f.calls("up"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Up calls %v", got)
	}
	if got := f.calls("down"); !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("Down calls %v", got)
	}
	data, _ := os.ReadFile(f.log)
	if !strings.Contains(string(data), "b down state=up") {
		t.Errorf("b's Down did not get the state its Up returned:\n%s", data)
	}
	f.noState("slow")
}

func TestSecondOperationFailsAtOnceNamingTheHolder(t *testing.T) {
	f := newFixture(t, []string{"a"}, nil)
	d := state.Dir{Root: f.states, Name: "busy"}
	lock, err := d.TryLock("run")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	start := time.Now()
	_, err = f.r.Run(context.Background(), f.plan("busy"), runner.RunOptions{})
	if !errors.Is(err, state.ErrBusy) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d (run)", os.Getpid())) {
		t.Errorf("want busy naming pid %d (run), got %v", os.Getpid(), err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("the second operation waited %s", time.Since(start))
	}
}

func TestDownFailureKeepsStateForAnotherStop(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, map[string]string{"a": `down = "fail"`})
	if _, err := f.r.Run(context.Background(), f.plan("df"), runner.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	err := f.r.Stop(context.Background(), "df", runner.StopOptions{})
	if err == nil || !strings.Contains(err.Error(), `stage "a"`) {
		t.Fatalf("stop: %v", err)
	}
	st, err := (state.Dir{Root: f.states, Name: "df"}).Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Stages[1].Status != state.StageDown || st.Stages[0].Owed() == false {
		t.Errorf("stages after a failed stop: %+v", st.Stages)
	}
	// The operator fixes the cause; stop again finishes the job.
	st.Stages[0].Params = map[string]string{"log": f.log}
	(state.Dir{Root: f.states, Name: "df"}).Save(st)
	if err := f.r.Stop(context.Background(), "df", runner.StopOptions{}); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	f.noState("df")
}

// TestStopWithAFullStateDirectory: with /run full, a stop cannot record
// its progress, but every stage still comes down and the state goes
// (removing works on a full file system): the stop succeeds, rather than
// report stages that did come down as failed to.
func TestStopWithAFullStateDirectory(t *testing.T) {
	f := newFixture(t, []string{"a", "b", "c", "d"}, nil)
	if err := unix.Mount("state", f.states, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=256k,mode=0700"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(f.states, 0); err != nil {
			t.Errorf("unmount the state tmpfs: %v", err)
		}
	})
	if _, err := f.r.Run(context.Background(), f.plan("full"), runner.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	fill, err := os.Create(filepath.Join(f.states, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	defer fill.Close()
	if _, err := fill.Write(make([]byte, 1<<20)); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("filling the state tmpfs: %v, want ENOSPC", err)
	}
	if err := f.r.Stop(context.Background(), "full", runner.StopOptions{}); err != nil {
		t.Errorf("stop with a full state directory: %v", err)
	}
	if got := f.calls("down"); !slices.Equal(got, []string{"d", "c", "b", "a"}) {
		t.Errorf("Down calls %v", got)
	}
	f.noState("full")
}

func TestStageOpUpDownCheck(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, nil)
	plan := f.plan("one")
	rep, err := f.r.StageOp(context.Background(), plan, "b", runner.OpUp)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Result == nil || rep.Result.Record.Extra["b"] != "up" {
		t.Errorf("report %+v", rep)
	}
	if _, err := f.r.StageOp(context.Background(), plan, "b", runner.OpCheck); err != nil {
		t.Errorf("check after up: %v", err)
	}
	if _, err := f.r.StageOp(context.Background(), plan, "b", runner.OpDown); err != nil {
		t.Fatal(err)
	}
	f.noState("one")
	if _, err := f.r.StageOp(context.Background(), plan, "nope", runner.OpUp); !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Errorf("unknown stage: %v", err)
	}
}

// stateTmp is where tests keep state: a tmpfs when there is one, as /run
// is on a production host.
var stateTmp = func() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return ""
}()
