package runner

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/sdk"
)

// Stages that declare how they use the boot record come up at the same
// time when neither reads what the other sets; a stage that reads what
// both set waits for both and gets their fields, and only the fields it
// reads; a stage that declares nothing waits for all before it.
func TestUpsOfIndependentStagesOverlap(t *testing.T) {
	f := newFixture(t, []string{"a", "b", "c", "d"}, nil)
	f.stages.uses = map[string]*sdk.RecordUse{
		"a": {Writes: []string{sdk.FieldRoot, sdk.FieldExtra}},
		"b": {Writes: []string{sdk.FieldNetns, sdk.FieldExtra}},
		"c": {Reads: []string{sdk.FieldExtra}, Writes: []string{sdk.FieldExtra}},
	}
	f.stages.sets = map[string][]string{"a": {sdk.FieldRoot}, "b": {sdk.FieldNetns}}
	// a's Up and b's each go on only once the other has begun: run one
	// after the other, they would time out.
	ups := meet(t, "Up")
	f.stages.onUp = ups.hook
	st, err := f.r.Run(context.Background(), f.plan("together"), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if order := ups.order; len(order) != 4 || !slices.Equal(order[2:], []string{"c", "d"}) {
		t.Errorf("Ups began in the order %v, want a and b, then c, then d", order)
	}
	c := f.stages.requestsFor("c", "up")[0].Record
	if c.Extra["a"] != "up" || c.Extra["b"] != "up" || c.Root != "" || c.Netns != "" {
		t.Errorf("c, which reads extra only, got the record %+v", c)
	}
	d := f.stages.requestsFor("d", "up")[0].Record
	if d.Root != "/a" || d.Netns != "/run/netns/b" || len(d.Extra) != 3 {
		t.Errorf("d, which declares nothing, got the record %+v", d)
	}
	if st.Status != state.Running || st.Record.Root != "/a" || len(st.Record.Extra) != 4 {
		t.Errorf("state after run: %+v", st)
	}
	// Down goes the other way: d, which declares nothing, first; then c,
	// which reads what a and b set; then a and b together.
	f.stages.onUp = nil
	downs := meet(t, "Down")
	f.stages.onDown = downs.hook
	if err := f.r.Stop(context.Background(), "together", StopOptions{Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if order := downs.order; len(order) != 4 || !slices.Equal(order[:2], []string{"d", "c"}) {
		t.Errorf("Downs began in the order %v, want d, c, then a and b", order)
	}
	f.noState("together")
}

// A stage that declares nothing keeps the pipeline's order on the way
// down as on the way up: last first, one at a time, also when the stages
// around it declare their use.
func TestUndeclaredStageGoesDownAlone(t *testing.T) {
	f := newFixture(t, []string{"a", "b", "c"}, map[string]misbehaviour{"b": {down: "fail"}})
	f.stages.uses = map[string]*sdk.RecordUse{
		"a": {Writes: []string{sdk.FieldExtra}},
		"c": {Writes: []string{sdk.FieldExtra}},
	}
	if _, err := f.r.Run(context.Background(), f.plan("alone"), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := f.stages.calls("up"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Ups %v", got)
	}
	err := f.r.Stop(context.Background(), "alone", StopOptions{Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), `stage "b": down fails on request`) {
		t.Fatalf("Stop: %v, want b's failure", err)
	}
	if got := f.stages.calls("down"); !slices.Equal(got, []string{"c", "b", "a"}) {
		t.Errorf("Downs %v, want c, b, a: a goes down past b's failure", got)
	}
}

// Stages that start together are recorded as starting, together, before
// either Up is called: a runner killed during them leaves both to stop.
func TestOverlappingUpsRecordedBeforeEither(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, nil)
	f.stages.uses = map[string]*sdk.RecordUse{
		"a": {Writes: []string{sdk.FieldExtra}},
		"b": {Writes: []string{sdk.FieldExtra}},
	}
	var mu sync.Mutex
	seen := map[string][]string{}
	f.stages.onUp = func(stage string) {
		st, err := f.r.dir("rec").Load()
		if err != nil {
			t.Errorf("state as %s comes up: %v", stage, err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, ss := range st.Stages {
			seen[stage] = append(seen[stage], ss.Status)
		}
	}
	if _, err := f.r.Run(context.Background(), f.plan("rec"), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, stage := range []string{"a", "b"} {
		for k, status := range seen[stage] {
			if status != state.StagePending && status != state.StageUp {
				t.Errorf("as %s comes up, stage %d is %q on disk, want it starting or up", stage, k, status)
			}
		}
		if len(seen[stage]) != 2 {
			t.Errorf("as %s comes up, the state on disk has %v", stage, seen[stage])
		}
	}
	f.r.Stop(context.Background(), "rec", StopOptions{Timeout: time.Second})
}

// A stage that is up while another is still coming up is on disk as up,
// with its state, before that one finishes: a runner killed meanwhile
// leaves stop what it needs to take it down.
func TestUpRecordedWhileAnotherIsComingUp(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, nil)
	f.stages.uses = map[string]*sdk.RecordUse{
		"a": {Writes: []string{sdk.FieldExtra}},
		"b": {Writes: []string{sdk.FieldExtra}},
	}
	onDisk := make(chan bool, 1)
	f.stages.onUp = func(stage string) {
		if stage != "b" {
			return
		}
		// b's Up waits (within its 1 s timeout) for a's result to be saved.
		onDisk <- poll(900*time.Millisecond, func() bool {
			st, err := f.r.dir("mid").Load()
			return err == nil && st.Stages[0].Status == state.StageUp && string(st.Stages[0].State) == `{"stage":"a"}`
		})
	}
	if _, err := f.r.Run(context.Background(), f.plan("mid"), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if !<-onDisk {
		t.Error("a was not recorded up on disk while b was still coming up")
	}
	f.r.Stop(context.Background(), "mid", StopOptions{Timeout: time.Second})
}

// poll reports whether cond held within timeout.
func poll(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// A stage whose result sets a field it does not declare fails the boot:
// a stage after it that does not wait for it could otherwise miss it.
func TestUpSettingAnUndeclaredFieldFails(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, nil)
	f.stages.uses = map[string]*sdk.RecordUse{
		"a": {Writes: []string{sdk.FieldExtra}},
		"b": {Writes: []string{sdk.FieldExtra}},
	}
	f.stages.sets = map[string][]string{"a": {sdk.FieldRoot}}
	_, err := f.r.Run(context.Background(), f.plan("liar"), RunOptions{})
	if err == nil || !strings.Contains(err.Error(), `stage "a"`) || !strings.Contains(err.Error(), "up set root in the boot record, which the stage does not declare") {
		t.Fatalf("Run: %v, want stage a's undeclared root", err)
	}
	if got := sorted(f.stages.calls("down")); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Downs %v, want both stages rolled back", got)
	}
	f.noState("liar")
}

// When one of the Ups under way fails, nothing more starts, the others
// finish, and every stage that came up or failed is rolled back; the
// error is the failing stage's.
func TestFailureAmongOverlappingUps(t *testing.T) {
	f := newFixture(t, []string{"a", "b", "c"}, map[string]misbehaviour{"a": {up: "fail"}})
	f.stages.uses = map[string]*sdk.RecordUse{
		"a": {Writes: []string{sdk.FieldExtra}},
		"b": {Writes: []string{sdk.FieldExtra}},
		"c": {Reads: []string{sdk.FieldExtra}, Writes: []string{sdk.FieldExtra}},
	}
	failed := make(chan struct{})
	f.stages.onUp = func(stage string) {
		switch stage {
		case "a":
			close(failed)
		case "b":
			<-failed
			time.Sleep(50 * time.Millisecond) // finishes after a's failure
		}
	}
	_, err := f.r.Run(context.Background(), f.plan("fails"), RunOptions{})
	if err == nil || !strings.Contains(err.Error(), `stage "a": fails on request`) {
		t.Fatalf("Run: %v, want a's failure", err)
	}
	if got := f.stages.calls("up"); slices.Contains(got, "c") {
		t.Errorf("Ups %v: c started after a failed", got)
	}
	if got := sorted(f.stages.calls("down")); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Downs %v, want a and b (together: neither depends on the other)", got)
	}
	f.noState("fails")
}

// A declaration naming a field the record does not have is refused
// before anything comes up.
func TestUnknownRecordFieldRefused(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, nil)
	f.stages.uses = map[string]*sdk.RecordUse{"b": {Reads: []string{"rootfs"}}}
	_, err := f.r.Run(context.Background(), f.plan("typo"), RunOptions{})
	if err == nil || !strings.Contains(err.Error(), `stage "b"`) || !strings.Contains(err.Error(), `"rootfs", which is not a boot-record field`) {
		t.Fatalf("Run: %v, want b's unknown field", err)
	}
	if got := f.stages.calls("up"); len(got) != 0 {
		t.Errorf("Ups %v after a refused declaration", got)
	}
	f.noState("typo")
}

func sorted(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}

// meeting is a fake stage hook that notes the order calls begin in, and
// holds stage a's call and stage b's each until the other has begun: one
// after the other, they fail the test after 5 s.
type meeting struct {
	t     *testing.T
	call  string
	mu    sync.Mutex
	order []string
	began map[string]chan struct{}
}

func meet(t *testing.T, call string) *meeting {
	return &meeting{t: t, call: call, began: map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}}
}

func (m *meeting) hook(stage string) {
	m.mu.Lock()
	m.order = append(m.order, stage)
	m.mu.Unlock()
	other := map[string]string{"a": "b", "b": "a"}[stage]
	if other == "" {
		return
	}
	close(m.began[stage])
	select {
	case <-m.began[other]:
	case <-time.After(5 * time.Second):
		m.t.Errorf("%s's %s began and %s's did not meanwhile", stage, m.call, other)
	}
}
