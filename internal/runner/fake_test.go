package runner

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/subhost/subhost/internal/pipeline"
	"github.com/subhost/subhost/internal/proc"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/sdk"
)

// The runner's tests run in-process with fake stages: no plugin is built
// or started and nothing on the host is touched, so they run as any user.

// misbehaviour is what a fake stage does on request.
type misbehaviour struct {
	validate string // "invalid"
	up       string // "fail", "exit", "panic", "hang", "slow", "conflict-root"
	down     string // "fail"
}

// fakeStages serves every stage in-process and logs each call.
type fakeStages struct {
	mu       sync.Mutex
	log      []string
	requests map[string][]*sdk.Request // by "STAGE CALL"
	behave   map[string]misbehaviour
	started  int
	live     map[*fakeInstance]bool
	// onUp, when set, is called as each Up begins (they come one at a
	// time unless uses declares the stages' use of the record).
	onUp func(stage string)
	// onDown is onUp for Down.
	onDown func(stage string)
	// uses is what each stage's Describe declares; none: nothing.
	uses map[string]*sdk.RecordUse
	// setsExtra makes Up set the stage's Extra key (as it always does)
	// and also these fields: "root", "netns".
	sets map[string][]string
	// guests are the shell commands that each Up of a stage behaving
	// "guest" starts in turn, as its guest's PID 1 (a child of the test).
	guests []string
}

func newFakeStages(behave map[string]misbehaviour) *fakeStages {
	return &fakeStages{behave: behave, requests: map[string][]*sdk.Request{}, live: map[*fakeInstance]bool{}}
}

func (f *fakeStages) Resolve(plugin string) (string, error) {
	if plugin == "missing" {
		return "", sdk.Invalidf("unknown stage plugin %q", plugin)
	}
	return "fake:" + plugin, nil
}

func (f *fakeStages) Start(_ context.Context, stage, path, _ string) (Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started++
	in := &fakeInstance{f: f, name: stage, path: path, killed: make(chan struct{})}
	f.live[in] = true
	return in, nil
}

func (f *fakeStages) note(stage, call string, req *sdk.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, stage+" "+call)
	f.requests[stage+" "+call] = append(f.requests[stage+" "+call], req)
}

// calls lists, in order, the stages that got a call of that kind.
func (f *fakeStages) calls(call string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, l := range f.log {
		stage, c, _ := strings.Cut(l, " ")
		if c == call {
			out = append(out, stage)
		}
	}
	return out
}

func (f *fakeStages) requestsFor(stage, call string) []*sdk.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[stage+" "+call]
}

// running counts instances started and not killed: the runner must keep
// none alive once an operation is over.
func (f *fakeStages) running() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.live)
}

type fakeInstance struct {
	f      *fakeStages
	name   string
	path   string
	mu     sync.Mutex
	exited bool
	killed chan struct{}
	once   sync.Once
}

func (in *fakeInstance) Stage() sdk.Stage { return fakeStage{in} }
func (in *fakeInstance) Path() string     { return in.path }
func (in *fakeInstance) Exited() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.exited
}
func (in *fakeInstance) Kill() {
	in.once.Do(func() { close(in.killed) })
	in.f.mu.Lock()
	delete(in.f.live, in)
	in.f.mu.Unlock()
}

type fakeStage struct{ in *fakeInstance }

func (s fakeStage) behaviour() misbehaviour { return s.in.f.behave[s.in.name] }

func (s fakeStage) Describe() sdk.Description {
	s.in.f.mu.Lock()
	defer s.in.f.mu.Unlock()
	return sdk.Description{Name: "fake", Record: s.in.f.uses[s.in.name]}
}

func (s fakeStage) Validate(_ context.Context, req *sdk.Request) error {
	s.in.f.note(s.in.name, "validate", req)
	if s.behaviour().validate == "invalid" {
		return sdk.Invalidf("parameter behavior: invalid on request")
	}
	return nil
}

func (s fakeStage) Up(ctx context.Context, req *sdk.Request) (*sdk.Result, error) {
	s.in.f.note(s.in.name, "up", req)
	if s.in.f.onUp != nil {
		s.in.f.onUp(s.in.name)
	}
	res := &sdk.Result{
		Record: sdk.BootRecord{Extra: map[string]string{s.in.name: "up"}},
		State:  []byte(`{"stage":"` + s.in.name + `"}`),
	}
	switch s.behaviour().up {
	case "fail":
		return res, sdk.Conflictf("fails on request")
	case "exit":
		// What the RPC layer reports when a plugin process dies mid-call.
		s.in.mu.Lock()
		s.in.exited = true
		s.in.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "error reading from server: EOF")
	case "panic":
		panic("fake stage panics on request")
	case "hang":
		<-s.in.killed // ignores ctx, as a stuck plugin would
		return nil, fmt.Errorf("killed")
	case "slow":
		time.Sleep(300 * time.Millisecond) // finishes after an interrupt
	case "conflict-root":
		res.Record.Root = "/elsewhere"
	case "root":
		res.Record.Root = "/live"
	case "guest":
		s.in.f.mu.Lock()
		script := s.in.f.guests[0]
		s.in.f.guests = s.in.f.guests[1:]
		s.in.f.mu.Unlock()
		cmd := exec.Command("sh", "-c", script)
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		res.Record.GuestPID = cmd.Process.Pid
		res.Record.GuestStartTime, _ = proc.StartTime(cmd.Process.Pid)
		cmd.Process.Release() // the supervision reaps it
	}
	for _, f := range s.in.f.sets[s.in.name] {
		switch f {
		case sdk.FieldRoot:
			res.Record.Root = "/" + s.in.name
		case sdk.FieldNetns:
			res.Record.Netns = "/run/netns/" + s.in.name
		}
	}
	return res, nil
}

func (s fakeStage) Down(_ context.Context, req *sdk.Request) error {
	s.in.f.note(s.in.name, "down", req)
	if s.in.f.onDown != nil {
		s.in.f.onDown(s.in.name)
	}
	if s.behaviour().down == "fail" {
		return sdk.Internalf("down fails on request")
	}
	return nil
}

func (s fakeStage) Check(_ context.Context, req *sdk.Request) error {
	s.in.f.note(s.in.name, "check", req)
	if len(req.State) == 0 {
		return sdk.NotFoundf("not up")
	}
	return nil
}

// fixture is a runner over fake stages with a state directory of its own.
type fixture struct {
	t      *testing.T
	r      *Runner
	stages *fakeStages
	names  []string
	home   string
}

func newFixture(t *testing.T, names []string, behave map[string]misbehaviour) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, stages: newFakeStages(behave), names: names, home: filepath.Join(dir, "home")}
	f.r = &Runner{
		Stages:         f.stages,
		StateRoot:      filepath.Join(dir, "state"),
		Logger:         hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: io.Discard}),
		Getenv:         func(string) (string, bool) { return "", false },
		InterruptGrace: 200 * time.Millisecond,
	}
	t.Cleanup(func() {
		if n := f.stages.running(); n != 0 {
			t.Errorf("%d stage instances still running after the test", n)
		}
	})
	return f
}

// plan is a plan for subhost name over the fixture's stages, made as
// MakePlan would make it from a pipeline.
func (f *fixture) plan(name string) *Plan {
	pl := &pipeline.Pipeline{Name: "p", Home: filepath.Dir(f.home), OnExit: "down"}
	for _, n := range f.names {
		pl.Stages = append(pl.Stages, pipeline.Stage{Name: n, Plugin: "fake", Timeout: time.Second, Params: map[string]string{}})
	}
	plan := &Plan{Name: name, Pipeline: pl, Subhost: sdk.Subhost{Name: name, Home: f.home}}
	for _, s := range pl.Stages {
		plan.Stages = append(plan.Stages, PlannedStage{Stage: s, Path: "fake:" + s.Plugin})
	}
	return plan
}

func (f *fixture) noState(name string) {
	f.t.Helper()
	names, _ := state.List(f.r.StateRoot)
	if slices.Contains(names, name) {
		f.t.Errorf("state for %s left behind", name)
	}
}

func reversed(xs []string) []string {
	out := slices.Clone(xs)
	slices.Reverse(out)
	return out
}
