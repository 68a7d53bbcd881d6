package runner

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

	"github.com/subhost/subhost/internal/pipeline"
	"github.com/subhost/subhost/internal/proc"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/sdk"
)

func TestOrderUpThenReverseDownOnStop(t *testing.T) {
	f := newFixture(t, []string{"a", "b", "c", "d"}, nil)
	st, err := f.r.Run(context.Background(), f.plan("four"), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.stages.calls("up"); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("Up order %v", got)
	}
	if got := f.stages.calls("validate"); len(got) != 4 {
		t.Errorf("validated %v, want every stage", got)
	}
	if st.Status != state.Running || len(st.Record.Extra) != 4 {
		t.Errorf("state after run: %+v", st)
	}
	if n := f.stages.running(); n != 0 {
		t.Errorf("%d stages left running after run", n)
	}
	if err := f.r.Stop(context.Background(), "four", StopOptions{Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if got := f.stages.calls("down"); !slices.Equal(got, []string{"d", "c", "b", "a"}) {
		t.Errorf("Down order %v, want the reverse of Up", got)
	}
	f.noState("four")
	if err := f.r.Stop(context.Background(), "four", StopOptions{}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("second stop: %v, want ErrNotRunning", err)
	}
}

// When a stage's Up begins, the state on disk has it starting and every
// stage before it up with the state its Up returned: a runner killed
// during that Up leaves stop all it needs. After the run, all are up and
// the subhost running.
func TestOrderEachUpRecordedBeforeTheNext(t *testing.T) {
	names := []string{"a", "b", "c"}
	f := newFixture(t, names, nil)
	seen := map[string]*state.State{}
	f.stages.onUp = func(stage string) {
		st, err := f.r.dir("rec").Load()
		if err != nil {
			t.Errorf("state as %s comes up: %v", stage, err)
			return
		}
		seen[stage] = st
	}
	if _, err := f.r.Run(context.Background(), f.plan("rec"), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		st := seen[name]
		if st == nil {
			continue
		}
		for j, ss := range st.Stages {
			want := ""
			switch {
			case j < i:
				want = state.StageUp
				if string(ss.State) != `{"stage":"`+names[j]+`"}` {
					t.Errorf("as %s comes up, %s's state on disk is %s", name, ss.Name, ss.State)
				}
			case j == i:
				want = state.StagePending
			}
			if want != "" && ss.Status != want {
				t.Errorf("as %s comes up, %s is %q on disk, want %q", name, ss.Name, ss.Status, want)
			}
		}
	}
	st, err := f.r.dir("rec").Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != state.Running || slices.ContainsFunc(st.Stages, func(s state.Stage) bool { return s.Status != state.StageUp }) {
		t.Errorf("after the run the state on disk is %s with stages %+v", st.Status, st.Stages)
	}
}

// Each stage sees the boot record as the stages before it made it, and
// Down sees the whole record and the state its own Up returned.
func TestOrderBootRecordFlowsDownThePipeline(t *testing.T) {
	f := newFixture(t, []string{"a", "b", "c"}, map[string]misbehaviour{"a": {up: "root"}})
	if _, err := f.r.Run(context.Background(), f.plan("rec"), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"a": nil, "b": {"a"}, "c": {"a", "b"}}
	for stage, saw := range want {
		req := f.stages.requestsFor(stage, "up")[0]
		var got []string
		for k := range req.Record.Extra {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, saw) {
			t.Errorf("%s's Up saw %v, want %v", stage, got, saw)
		}
		if stage != "a" && req.Record.Root != "/live" {
			t.Errorf("%s's Up did not get a's root: %+v", stage, req.Record)
		}
	}
	if err := f.r.Stop(context.Background(), "rec", StopOptions{}); err != nil {
		t.Fatal(err)
	}
	req := f.stages.requestsFor("b", "down")[0]
	if len(req.Record.Extra) != 3 || string(req.State) != `{"stage":"b"}` {
		t.Errorf("b's Down got record %+v and state %q", req.Record, req.State)
	}
}

func TestRollbackAtEveryIndex(t *testing.T) {
	stages := []string{"a", "b", "c", "d"}
	for i, failing := range stages {
		for _, how := range []string{"fail", "exit", "panic", "hang", "conflict-root"} {
			if how == "conflict-root" && i == 0 {
				continue // a conflict needs a stage before it
			}
			t.Run(failing+"-"+how, func(t *testing.T) {
				behave := map[string]misbehaviour{failing: {up: how}}
				if how == "conflict-root" {
					behave["a"] = misbehaviour{up: "root"}
				}
				f := newFixture(t, stages, behave)
				_, err := f.r.Run(context.Background(), f.plan("rb"), RunOptions{})
				if err == nil {
					t.Fatal("run succeeded")
				}
				name := fmt.Sprintf("stage %q", failing)
				if strings.Count(err.Error(), `stage "`) != 1 || !strings.Contains(err.Error(), name) {
					t.Errorf("the error must name the stage once: %v", err)
				}
				want := reversed(stages[:i+1])
				if got := f.stages.calls("down"); !slices.Equal(got, want) {
					t.Errorf("Down calls %v, want %v", got, want)
				}
				if got := f.stages.calls("up"); !slices.Equal(got, stages[:i+1]) {
					t.Errorf("Up calls %v, want %v", got, stages[:i+1])
				}
				f.noState("rb")
			})
		}
	}
}

func TestRollbackNothingWhenValidationFails(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, map[string]misbehaviour{"b": {validate: "invalid"}})
	_, err := f.r.Run(context.Background(), f.plan("inv"), RunOptions{})
	if !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Fatalf("want an invalid-config error, got %v", err)
	}
	if !strings.HasPrefix(err.Error(), `stage "b": parameter behavior`) {
		t.Errorf("error %q does not start with the stage's name", err)
	}
	if got := f.stages.calls("up"); len(got) != 0 {
		t.Errorf("Up was called after a failed validation: %v", got)
	}
	if got := f.stages.calls("down"); len(got) != 0 {
		t.Errorf("Down was called though nothing was up: %v", got)
	}
	f.noState("inv")
}

func TestRollbackOnInterrupt(t *testing.T) {
	f := newFixture(t, []string{"a", "b", "c"}, map[string]misbehaviour{"b": {up: "hang"}})
	f.r.InterruptGrace = 100 * time.Millisecond
	plan := f.plan("intr")
	plan.Stages[1].Timeout = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err := f.r.Run(ctx, plan, RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("want an interrupted error, got %v", err)
	}
	if got := f.stages.calls("down"); !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("Down calls %v", got)
	}
	f.noState("intr")
}

// A stage that finishes its Up after the interrupt is recorded and taken
// down with the state it returned: what it made (a launched guest) is not
// lost.
func TestRollbackKeepsAnUpFinishedAfterTheInterrupt(t *testing.T) {
	f := newFixture(t, []string{"a", "b", "c"}, map[string]misbehaviour{"b": {up: "slow"}})
	f.r.InterruptGrace = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := f.r.Run(ctx, f.plan("slow"), RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("want an interrupted error, got %v", err)
	}
	if got := f.stages.calls("up"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Up calls %v", got)
	}
	if got := f.stages.calls("down"); !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("Down calls %v", got)
	}
	if reqs := f.stages.requestsFor("b", "down"); len(reqs) != 1 || string(reqs[0].State) != `{"stage":"b"}` {
		t.Errorf("b's Down did not get the state its Up returned: %+v", reqs)
	}
	f.noState("slow")
}

func TestReverseStopKeepsStateWhenADownFails(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, map[string]misbehaviour{"a": {down: "fail"}})
	if _, err := f.r.Run(context.Background(), f.plan("df"), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	err := f.r.Stop(context.Background(), "df", StopOptions{})
	if err == nil || !strings.Contains(err.Error(), `stage "a": down fails`) {
		t.Fatalf("stop: %v", err)
	}
	d := state.Dir{Root: f.r.StateRoot, Name: "df"}
	st, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Stages[1].Status != state.StageDown || !st.Stages[0].Owed() || st.Status != state.Failed {
		t.Errorf("stages after a failed stop: %+v", st.Stages)
	}
	// The operator fixes the cause; stop again finishes the job.
	f.stages.behave = nil
	if err := f.r.Stop(context.Background(), "df", StopOptions{}); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if got := f.stages.calls("down"); !slices.Equal(got, []string{"b", "a", "a"}) {
		t.Errorf("Down calls %v, want b a, then a again", got)
	}
	f.noState("df")
}

func TestOrderSecondOperationFailsAtOnceNamingTheHolder(t *testing.T) {
	f := newFixture(t, []string{"a"}, nil)
	lock, err := state.Dir{Root: f.r.StateRoot, Name: "busy"}.TryLock("run")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	_, err = f.r.Run(context.Background(), f.plan("busy"), RunOptions{})
	if !errors.Is(err, state.ErrBusy) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d (run)", os.Getpid())) {
		t.Errorf("want busy naming pid %d (run), got %v", os.Getpid(), err)
	}
	if n := f.stages.started; n != 0 {
		t.Errorf("%d stages started while another operation held the lock", n)
	}
}

// The runner's own inputs reach every stage as request fields: the
// console, and the other subhosts on the host (never a stage's reading of
// the runner's state files).
func TestOrderRequestCarriesConsoleAndOthers(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, nil)
	other := &state.State{Name: "other", Status: state.Hibernating, Record: sdk.BootRecord{
		Interfaces: []sdk.Interface{{HostName: "other0", GuestName: "eth0", MAC: "06:00:00:00:00:01", Bridge: "br0"}},
	}}
	gone := &state.State{Name: "gone", Status: state.Stopped}
	for _, st := range []*state.State{other, gone} {
		if err := (state.Dir{Root: f.r.StateRoot, Name: st.Name}).Save(st); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.r.Run(context.Background(), f.plan("me"), RunOptions{Console: "/dev/pts/77"}); err != nil {
		t.Fatal(err)
	}
	for _, call := range []string{"validate", "up"} {
		for _, stage := range []string{"a", "b"} {
			req := f.stages.requestsFor(stage, call)[0]
			if call == "up" && req.Console != "/dev/pts/77" {
				t.Errorf("%s %s: console %q", stage, call, req.Console)
			}
			if len(req.Others) != 1 || req.Others[0].Name != "other" || req.Others[0].Interfaces[0].MAC != "06:00:00:00:00:01" {
				t.Errorf("%s %s: others %+v, want only the hibernating subhost with its MAC", stage, call, req.Others)
			}
		}
	}
	if err := f.r.Stop(context.Background(), "me", StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if req := f.stages.requestsFor("a", "down")[0]; req.Console != "/dev/pts/77" {
		t.Errorf("Down got console %q", req.Console)
	}
}

func TestOrderStageOpUpCheckDown(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, nil)
	plan := f.plan("one")
	rep, err := f.r.StageOp(context.Background(), plan, "b", OpUp)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Result == nil || rep.Result.Record.Extra["b"] != "up" {
		t.Errorf("report %+v", rep)
	}
	if _, err := f.r.StageOp(context.Background(), plan, "b", OpCheck); err != nil {
		t.Errorf("check after up: %v", err)
	}
	if _, err := f.r.StageOp(context.Background(), plan, "b", OpDown); err != nil {
		t.Fatal(err)
	}
	f.noState("one")
	if _, err := f.r.StageOp(context.Background(), plan, "nope", OpUp); !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Errorf("unknown stage: %v", err)
	}
	if got := f.stages.calls("up"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("stage b up called %v", got)
	}
}

// A hibernating subhost is re-entered: Up runs again with each stage's
// recorded state, so that it adopts what exists.
func TestOrderRunAgainAdoptsRecordedState(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, nil)
	if _, err := f.r.Run(context.Background(), f.plan("again"), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.Run(context.Background(), f.plan("again"), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	reqs := f.stages.requestsFor("b", "up")
	if len(reqs) != 2 || reqs[0].State != nil || string(reqs[1].State) != `{"stage":"b"}` {
		t.Errorf("b's second Up did not get its recorded state: %+v", reqs)
	}
	if err := f.r.Stop(context.Background(), "again", StopOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A stage whose pipeline says when= with a config variable that is unset
// or "no" is skipped: its plugin is not started, it gets no call, its
// state says so, and stop owes it nothing. Set, it runs.
func TestOrderStageSkippedByWhen(t *testing.T) {
	f := newFixture(t, []string{"a", "b", "c"}, nil)
	plan := f.plan("when")
	plan.Stages[1].When = "GATE"
	if _, err := f.r.Run(context.Background(), plan, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := f.stages.calls("validate"); slices.Contains(got, "b") {
		t.Errorf("validated %v: the skipped stage too", got)
	}
	if got := f.stages.calls("up"); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("Up order %v, want a and c", got)
	}
	if f.stages.started != 2 {
		t.Errorf("%d plugins started, want 2", f.stages.started)
	}
	st, err := f.r.dir("when").Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Stages[1].Status != state.StageSkipped || st.Stages[1].Owed() {
		t.Errorf("skipped stage's state: %+v", st.Stages[1])
	}
	// A stage brought up again alone leaves the subhost running: the
	// skipped stage is not one still to come up.
	if _, err := f.r.StageOp(context.Background(), plan, "a", OpUp); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.r.dir("when").Load(); st.Status != state.Running {
		t.Errorf("after stage a up: status %s, want running", st.Status)
	}
	if err := f.r.Stop(context.Background(), "when", StopOptions{Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if got := f.stages.calls("down"); !slices.Equal(got, []string{"c", "a"}) {
		t.Errorf("Down order %v, want c, a", got)
	}

	g := newFixture(t, []string{"a", "b"}, nil)
	plan = g.plan("gated")
	plan.Stages[1].When = "GATE"
	plan.Subhost.Vars = map[string]sdk.Var{"GATE": {Words: []string{"yes"}}}
	if _, err := g.r.Run(context.Background(), plan, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := g.stages.calls("up"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("with GATE=yes, Up order %v, want a, b", got)
	}
	if err := g.r.Stop(context.Background(), "gated", StopOptions{Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
}

// AfterUp is called once, after the last stage's Up and while the
// plugins still run (they are ended after it); a boot whose Up fails
// never calls it.
func TestAfterUpComesAfterEveryUpBeforeThePluginsEnd(t *testing.T) {
	f := newFixture(t, []string{"a", "b", "c"}, nil)
	var ups []string
	var live int
	calls := 0
	_, err := f.r.Run(context.Background(), f.plan("after"), RunOptions{AfterUp: func() {
		calls++
		ups, live = f.stages.calls("up"), f.stages.running()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 || !slices.Equal(ups, []string{"a", "b", "c"}) || live == 0 {
		t.Errorf("AfterUp called %d times, after Ups %v with %d plugins running; want once, after a b c, with plugins running", calls, ups, live)
	}
	if n := f.stages.running(); n != 0 {
		t.Errorf("%d plugins left running after the run", n)
	}
	if err := f.r.Stop(context.Background(), "after", StopOptions{Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}

	g := newFixture(t, []string{"a", "b"}, map[string]misbehaviour{"b": {up: "fail"}})
	if _, err := g.r.Run(context.Background(), g.plan("fails"), RunOptions{AfterUp: func() { t.Error("AfterUp called for a failed boot") }}); err == nil {
		t.Fatal("a failing Up: no error")
	}
}

// A pipeline edited (or upgraded) under a subhost that is up: a stage
// added, swapped or removed. The runner pairs stages with their records
// by their place, so run again refuses before any Up (as does a stage
// operation), and stop takes down what was brought up, from the record.
func TestRunAgainRefusesAPipelineWithOtherStages(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after []string
	}{
		{"added", []string{"a", "c"}, []string{"a", "b", "c"}},
		{"swapped", []string{"a", "c", "d"}, []string{"a", "b", "d"}},
		{"removed", []string{"a", "b", "c"}, []string{"a", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, tc.before, nil)
			if _, err := f.r.Run(ctx, f.plan("edited"), RunOptions{}); err != nil {
				t.Fatal(err)
			}
			f.names = tc.after
			_, err := f.r.Run(ctx, f.plan("edited"), RunOptions{})
			if !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), "stop it first") {
				t.Errorf("run with the edited pipeline: %v, want a conflict", err)
			}
			if _, err := f.r.StageOp(ctx, f.plan("edited"), "a", OpUp); !sdk.IsKind(err, sdk.KindConflict) {
				t.Errorf("stage a up with the edited pipeline: %v, want a conflict", err)
			}
			if got := f.stages.calls("up"); !slices.Equal(got, tc.before) {
				t.Errorf("Ups %v, want only the first run's %v", got, tc.before)
			}
			if err := f.r.Stop(ctx, "edited", StopOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := f.stages.calls("down"); !slices.Equal(got, reversed(tc.before)) {
				t.Errorf("Downs %v, want %v", got, reversed(tc.before))
			}
			f.noState("edited")
		})
	}
}

// A subhost left with state (hibernating, or failed half-up) and run
// again from another home (say `control start` under sudo, which drops
// SUBHOST) is refused: its stages would look for what they made under
// the new home, and what is mounted under the old one would be lost.
func TestRunAgainRefusesAnotherHome(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, []string{"a", "b"}, nil)
	if _, err := f.r.Run(ctx, f.plan("moved"), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	other := f.plan("moved")
	other.Subhost.Home = filepath.Join(t.TempDir(), "moved")
	_, err := f.r.Run(ctx, other, RunOptions{})
	if !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), fmt.Sprintf("was brought up from home %q, not %q", f.home, other.Subhost.Home)) {
		t.Errorf("run from another home: %v, want a conflict naming both homes", err)
	}
	if _, err := f.r.StageOp(ctx, other, "a", OpUp); !sdk.IsKind(err, sdk.KindConflict) {
		t.Errorf("stage a up from another home: %v, want a conflict", err)
	}
	if got := f.stages.calls("up"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Ups %v, want only the first run's", got)
	}
	if err := f.r.Stop(ctx, "moved", StopOptions{}); err != nil {
		t.Fatal(err)
	}
	f.noState("moved")
}

// A stop (or set) while a boot holds the lock but has written no state
// yet (its plugins start and validate) says the subhost is busy and who
// holds it, not that it is not running; with nobody holding it, not
// running, and it makes nothing.
func TestStopWhileABootValidates(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, []string{"a"}, nil)
	d := state.Dir{Root: f.r.StateRoot, Name: "early"}
	lock, err := d.TryLock("run")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("busy: pid %d (run) holds its lock", os.Getpid())
	if err := f.r.Stop(ctx, "early", StopOptions{}); !errors.Is(err, state.ErrBusy) || !strings.Contains(err.Error(), want) {
		t.Errorf("stop during the boot's validation: %v, want %q", err, want)
	}
	if _, err := f.r.Update(ctx, "early", map[string]string{"X": "1"}); !errors.Is(err, state.ErrBusy) {
		t.Errorf("set during the boot's validation: %v, want busy", err)
	}
	lock.Release()
	if err := f.r.Stop(ctx, "early", StopOptions{}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("stop once the lock is free: %v, want ErrNotRunning", err)
	}
	if _, err := os.Stat(filepath.Join(f.r.StateRoot, "early")); err == nil {
		t.Error("stop of a subhost without state left its directory")
	}
	// A run killed before its first save leaves the directory and its
	// lock file, held by nobody: a stop takes them away.
	if err := os.MkdirAll(d.Root+"/early", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.Root, "early", "lock"), []byte("99999 run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Stop(ctx, "early", StopOptions{}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("stop after a run killed before its first save: %v, want ErrNotRunning", err)
	}
	if _, err := os.Stat(filepath.Join(f.r.StateRoot, "early")); err == nil {
		t.Error("stop left the directory of a run killed before its first save")
	}
	// And one for a name that never existed makes nothing.
	if err := f.r.Stop(ctx, "never", StopOptions{}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("stop of a subhost that never existed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.r.StateRoot, "never")); err == nil {
		t.Error("stop of a subhost that never existed made its directory")
	}
}

// The plan rebuilt from the state (a supervisor handed back while the
// config or pipeline files do not load) keeps the RESTART the subhost was
// booted with: its crashed guest is restarted, not taken down.
func TestPlanFromStateKeepsRestart(t *testing.T) {
	f := newFixture(t, []string{"a"}, nil)
	plan := f.plan("rs")
	plan.Subhost.Vars = map[string]sdk.Var{RestartVar: {Words: []string{"on-failure"}}}
	if _, err := f.r.Run(context.Background(), plan, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	f.r.Pipelines = nil // they no longer load
	got, err := f.r.ResumePlan(Target{Name: "rs"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Restart != RestartOnFailure {
		t.Errorf("the recorded plan's RESTART is %q, want on-failure", got.Restart)
	}
	if err := f.r.Stop(context.Background(), "rs", StopOptions{Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
}

// A supervisor that subhost-monitor hands back resumes with the plan
// recorded at boot when the pipeline's stages have changed since (here,
// pretend-boot as it was before it had a cgroup stage), and with the
// pipeline's own plan when they have not.
func TestResumePlanKeepsTheRecordedStages(t *testing.T) {
	set, err := pipeline.Load(pipeline.LoadOptions{Dirs: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	builtin, err := set.Get("pretend-boot")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		booted []string
	}{
		{"older", []string{"userns", "mount-loop", "net-veth", "init"}},
		{"same", []string{"userns", "mount-loop", "net-veth", "cgroup", "init"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.booted, nil)
			f.r.Pipelines = set
			plan := &Plan{Name: tc.name, Pipeline: builtin, Subhost: sdk.Subhost{Name: tc.name, Home: f.home}}
			for _, n := range tc.booted {
				plan.Stages = append(plan.Stages, PlannedStage{Stage: pipeline.Stage{Name: n, Plugin: n, Timeout: time.Second}, Path: "fake:" + n})
			}
			if _, err := f.r.Run(context.Background(), plan, RunOptions{}); err != nil {
				t.Fatal(err)
			}
			resumed, err := f.r.ResumePlan(Target{Name: tc.name, Pipeline: "pretend-boot", Home: f.home})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range resumed.Stages {
				got = append(got, s.Name)
			}
			if !slices.Equal(got, tc.booted) {
				t.Errorf("resumed with stages %v, want the recorded %v", got, tc.booted)
			}
			// Pipelines that no longer load (settings.ResumeRunner).
			f.r.Pipelines = nil
			if resumed, err = f.r.ResumePlan(Target{Name: tc.name, Pipeline: "pretend-boot", Home: f.home}); err != nil || len(resumed.Stages) != len(tc.booted) {
				t.Errorf("without pipelines: resumed with %v, %v; want the recorded plan", resumed, err)
			}
			if err := f.r.Stop(context.Background(), tc.name, StopOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A stop asked for while the guest reboots (a service manager's SIGTERM
// cancels the supervisor's context) is kept: the supervision, stopping,
// does not hand itself over when the new guest starts (OnGuest sees
// Stopping), the new guest is powered off and every stage comes down.
// A stop's request that no supervisor took (the stop then failed half
// way) does not outlive it into the next boot, whose monitor would take
// it for one; and a stop that finds the lock held with no supervisor
// recorded (the supervisor between a guest's end and its next boot)
// waits for it rather than failing busy.
func TestStopRequestsAndBusyLocks(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, []string{"a"}, nil)
	d := f.r.dir("req")
	if _, err := f.r.Run(ctx, f.plan("req"), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	d.WriteStopRequest(state.StopRequest{TimeoutMS: 1, Force: true})
	if _, err := f.r.Run(ctx, f.plan("req"), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.TakeStopRequest(); ok {
		t.Error("a stale stop request outlived a run")
	}
	held, err := d.TryLock("supervise")
	if err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(300 * time.Millisecond); held.Release() }()
	if err := f.r.Stop(ctx, "req", StopOptions{Timeout: time.Second}); err != nil {
		t.Errorf("stop while the lock was held a moment: %v", err)
	}
	f.noState("req")
}

// A power-off asked of a guest that rebooted anyway (it was rebooting
// already: PID 1 acts on the first request) does not keep its successor
// from being restarted by RESTART=on-failure when it crashes.
func TestPowerOffAskedIsForgottenAtAReboot(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, map[string]misbehaviour{"b": {up: "guest"}})
	ready := filepath.Join(t.TempDir(), "ready")
	f.stages.guests = []string{
		// Reboots when asked to power off (once it can hear it).
		"trap 'exit 100' 30; : >" + ready + "; while :; do sleep 0.05; done",
		"exit 1",        // crashes
		"exec sleep 10", // until the stop
	}
	plan := f.plan("po")
	plan.Restart = RestartOnFailure
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	powerOff := make(chan struct{}, 1)
	guests := 0
	var out Outcome
	_, err := f.r.Run(ctx, plan, RunOptions{Supervise: func(ctx context.Context, sup *Supervision) error {
		var err error
		out, err = sup.Loop(ctx, LoopOptions{
			PowerOff: powerOff,
			OnGuest: func(int) {
				switch guests++; guests {
				case 1:
					go func() {
						for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
							if _, err := os.Stat(ready); err == nil {
								break
							}
						}
						powerOff <- struct{}{}
					}()
				case 3:
					cancel()
				}
			},
		})
		return err
	}})
	if err != nil {
		t.Fatal(err)
	}
	if guests != 3 {
		t.Errorf("%d guests ran, want 3: the crashed one restarted", guests)
	}
	if out.Status != state.Stopped {
		t.Errorf("supervision ended %q, want stopped", out.Status)
	}
	f.noState("po")
}

func TestStopAskedDuringARebootIsKept(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, map[string]misbehaviour{"b": {up: "guest"}})
	f.stages.guests = []string{"exit 100", "exec sleep 10"} // a reboot; then a guest until SIGPWR
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stopping []bool
	var out Outcome
	_, err := f.r.Run(ctx, f.plan("rb"), RunOptions{Supervise: func(ctx context.Context, sup *Supervision) error {
		var err error
		out, err = sup.Loop(ctx, LoopOptions{
			BeforeReboot: func() error { cancel(); return nil },
			OnGuest:      func(int) { stopping = append(stopping, sup.Stopping()) },
		})
		return err
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stopping, []bool{false, true}) {
		t.Errorf("OnGuest saw Stopping %v, want false for the first guest and true for the rebooted one", stopping)
	}
	if out.Status != state.Stopped {
		t.Errorf("supervision ended %q, want stopped", out.Status)
	}
	if got := f.stages.calls("down"); !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("Downs %v, want b, a", got)
	}
	f.noState("rb")
}

// A run while the recorded supervisor is alive but the guest is not (its
// guest has just ended and subhost-monitor is handing the supervision
// back, with the lock free) is refused: that supervisor decides what
// comes next, and a second one would launch another guest.
func TestRunRefusedWhileTheSupervisorLives(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, nil)
	if _, err := f.r.Run(context.Background(), f.plan("sup"), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	d := f.r.dir("sup")
	st, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	st.Supervisor = os.Getpid()
	st.SupervisorStartTime, _ = proc.StartTime(os.Getpid())
	if err := d.Save(st); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.Run(context.Background(), f.plan("sup"), RunOptions{}); !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), "supervised by pid") {
		t.Errorf("run with a live supervisor: %v, want a conflict naming it", err)
	}
	if got := f.stages.calls("up"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Ups %v, want only the first run's", got)
	}
	st.Supervisor = 0
	if err := d.Save(st); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Stop(context.Background(), "sup", StopOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A home reached through a symlink is given by the path it resolves to,
// as the kernel's mount table names it; one that does not exist stays
// as written.
func TestPathsResolveTheHome(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "srv")
	if err := os.MkdirAll(filepath.Join(real, "web"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "opt")); err != nil {
		t.Fatal(err)
	}
	pl := &pipeline.Pipeline{Home: filepath.Join(dir, "opt")}
	home, cfg, err := Target{Name: "web"}.Paths(pl)
	if err != nil || home != filepath.Join(real, "web") || cfg != filepath.Join(real, "web", "config") {
		t.Errorf("through a symlink: %s %s %v, want %s", home, cfg, err, filepath.Join(real, "web"))
	}
	home, _, err = Target{Name: "nope"}.Paths(pl)
	if err != nil || home != filepath.Join(dir, "opt", "nope") {
		t.Errorf("missing home: %s %v", home, err)
	}
}
