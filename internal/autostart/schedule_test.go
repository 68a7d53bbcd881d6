package autostart

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeOps records starts and stops; each takes hold, and the most that
// ran at once is kept.
type fakeOps struct {
	hold    time.Duration
	holdFor map[string]time.Duration // instead of hold
	fail    map[string]bool
	running map[string]bool
	bridges map[string][]string
	present func(bridge string) bool

	mu      sync.Mutex
	now     int
	maxNow  int
	order   []string
	stopArg map[string]string
}

func (f *fakeOps) Running(name string) bool { return f.running[name] }
func (f *fakeOps) Bridges(e Entry) ([]string, error) {
	return f.bridges[e.Name], nil
}
func (f *fakeOps) BridgeExists(b string) bool { return f.present == nil || f.present(b) }

func (f *fakeOps) do(name string) error {
	f.mu.Lock()
	f.now++
	f.maxNow = max(f.maxNow, f.now)
	f.order = append(f.order, name)
	hold, ok := f.holdFor[name]
	if !ok {
		hold = f.hold
	}
	f.mu.Unlock()
	time.Sleep(hold)
	f.mu.Lock()
	f.now--
	f.mu.Unlock()
	if f.fail[name] {
		return errors.New("broken")
	}
	return nil
}

func (f *fakeOps) Start(_ context.Context, e Entry) error { return f.do(e.Name) }

func (f *fakeOps) Stop(_ context.Context, name string, timeout time.Duration, force bool) error {
	f.mu.Lock()
	if f.stopArg == nil {
		f.stopArg = map[string]string{}
	}
	f.stopArg[name] = fmt.Sprintf("%s/%v", timeout, force)
	f.mu.Unlock()
	return f.do(name)
}

func TestStartInOrderEqualOrdersInParallel(t *testing.T) {
	ops := &fakeOps{hold: 50 * time.Millisecond}
	entries := []Entry{{Name: "c", Order: 30}, {Name: "a", Order: 20}, {Name: "b1", Order: 10}, {Name: "b2", Order: 10}, {Name: "b3", Order: 10}}
	rs := Start(context.Background(), entries, ops, StartOptions{Parallel: 2})
	if Failed(rs) != 0 {
		t.Fatalf("results %+v", rs)
	}
	first := ops.order[:3]
	slices.Sort(first)
	if !slices.Equal(first, []string{"b1", "b2", "b3"}) || ops.order[3] != "a" || ops.order[4] != "c" {
		t.Errorf("start order %v, want b* (order 10), then a, then c", ops.order)
	}
	if ops.maxNow != 2 {
		t.Errorf("at most %d started at once, want --parallel 2", ops.maxNow)
	}
}

func TestStartGroupAndIdempotence(t *testing.T) {
	ops := &fakeOps{running: map[string]bool{"a": true}}
	entries := []Entry{{Name: "a", Group: "web"}, {Name: "b", Group: "web"}, {Name: "c", Group: "db"}}
	rs := Start(context.Background(), entries, ops, StartOptions{Group: "web", Parallel: 1})
	if len(rs) != 2 || rs[0].Skipped != "already running" || rs[1].Skipped != "" || rs[1].Err != nil {
		t.Errorf("results %+v, want a skipped (running) and b started; c not in group", rs)
	}
	if !slices.Equal(ops.order, []string{"b"}) {
		t.Errorf("started %v, want only b", ops.order)
	}
}

func TestStartOneFailureDoesNotStopTheRest(t *testing.T) {
	ops := &fakeOps{fail: map[string]bool{"a": true}}
	entries := []Entry{{Name: "a", Order: 1}, {Name: "b", Order: 2}}
	rs := Start(context.Background(), entries, ops, StartOptions{Parallel: 1})
	if Failed(rs) != 1 || rs[0].Err == nil || rs[1].Err != nil {
		t.Errorf("results %+v, want a failed and b started", rs)
	}
}

func TestStartDelayBeforeNextOrder(t *testing.T) {
	ops := &fakeOps{}
	entries := []Entry{{Name: "a", Order: 1, Delay: 300 * time.Millisecond}, {Name: "b", Order: 2}}
	var at []time.Time
	var mu sync.Mutex
	rs := Start(context.Background(), entries, ops, StartOptions{Parallel: 1, Report: func(Result) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
	}})
	if Failed(rs) != 0 || len(at) != 2 {
		t.Fatalf("results %+v", rs)
	}
	// Order, not timing, is asserted elsewhere; a delay is a lower bound.
	if gap := at[1].Sub(at[0]); gap < 300*time.Millisecond {
		t.Errorf("b started %s after a, want at least a's delay 300ms", gap)
	}
}

func TestStartWaitsForBridgesBounded(t *testing.T) {
	appear := time.Now().Add(300 * time.Millisecond)
	ops := &fakeOps{
		bridges: map[string][]string{"late": {"br-late"}, "never": {"br-none"}},
		present: func(b string) bool { return b == "br-late" && time.Now().After(appear) },
	}
	entries := []Entry{{Name: "late", Order: 1}, {Name: "never", Order: 1}}
	rs := Start(context.Background(), entries, ops, StartOptions{Parallel: 2, BridgeWait: time.Second})
	if rs[0].Err != nil {
		t.Errorf("late: %v, want started once br-late appeared", rs[0].Err)
	}
	if rs[1].Err == nil || !strings.Contains(rs[1].Err.Error(), "bridge br-none does not exist after waiting 1s") {
		t.Errorf("never: %v, want a clear error naming the bridge", rs[1].Err)
	}
	if !slices.Equal(ops.order, []string{"late"}) {
		t.Errorf("started %v, want only late", ops.order)
	}
}

func TestStopAllReverseOrderUnenrolledFirst(t *testing.T) {
	ops := &fakeOps{}
	up := []Up{{Name: "b", Order: 10}, {Name: "hand", Order: Unenrolled}, {Name: "c", Order: 30}, {Name: "a", Order: 20}}
	rs := StopAll(context.Background(), up, ops, StopOptions{Timeout: 5 * time.Second, Total: time.Minute, Parallel: 1})
	if Failed(rs) != 0 {
		t.Fatalf("results %+v", rs)
	}
	if !slices.Equal(ops.order, []string{"hand", "c", "a", "b"}) {
		t.Errorf("stop order %v, want hand (not enrolled), c, a, b", ops.order)
	}
	if ops.stopArg["b"] != "5s/false" {
		t.Errorf("b stopped with %s, want the timeout 5s, not forced", ops.stopArg["b"])
	}
}

// Without --timeout each guest gets its own time to power off, as a plain
// stop gives it: its pipeline's shutdown_timeout, 30s when unknown, and
// never more than is left before the force point.
func TestStopAllGivesEachGuestItsOwnTimeout(t *testing.T) {
	ops := &fakeOps{}
	up := []Up{{Name: "quick", Timeout: 10 * time.Second}, {Name: "plain"}, {Name: "slow", Timeout: 5 * time.Minute}}
	rs := StopAll(context.Background(), up, ops, StopOptions{Total: 2 * time.Minute, Parallel: 3})
	if Failed(rs) != 0 {
		t.Fatalf("results %+v", rs)
	}
	if ops.stopArg["quick"] != "10s/false" || ops.stopArg["plain"] != "30s/false" {
		t.Errorf("stopped quick with %s and plain with %s, want 10s/false and 30s/false", ops.stopArg["quick"], ops.stopArg["plain"])
	}
	arg, _ := strings.CutSuffix(ops.stopArg["slow"], "/false")
	if d, err := time.ParseDuration(arg); err != nil || d > 2*time.Minute-ForceReserve || d < 2*time.Minute-ForceReserve-5*time.Second {
		t.Errorf("stopped slow with %s, want its 5m cut to what is left before the force point (about 1m45s), not forced", ops.stopArg["slow"])
	}

	// --timeout is for every guest, whatever its own.
	ops = &fakeOps{}
	StopAll(context.Background(), up, ops, StopOptions{Timeout: 20 * time.Second, Total: 2 * time.Minute, Parallel: 3})
	for _, u := range up {
		if ops.stopArg[u.Name] != "20s/false" {
			t.Errorf("with a timeout of 20s, %s stopped with %s", u.Name, ops.stopArg[u.Name])
		}
	}
}

// When the total runs short, the guests left are killed at once, and a
// stop still going at the total is reported, not waited for.
func TestStopAllBoundedByTotal(t *testing.T) {
	ops := &fakeOps{hold: 200 * time.Millisecond}
	up := []Up{{Name: "a", Order: 2}, {Name: "b", Order: 1}}
	rs := StopAll(context.Background(), up, ops, StopOptions{Timeout: time.Minute, Total: ForceReserve + 100*time.Millisecond, Parallel: 1})
	if rs[0].Err != nil || !strings.HasSuffix(ops.stopArg["a"], "/false") {
		t.Errorf("a: %v with %s, want stopped with the total's remainder", rs[0].Err, ops.stopArg["a"])
	}
	if ops.stopArg["b"] != "0s/true" {
		t.Errorf("b stopped with %s, want forced once the reserve was reached", ops.stopArg["b"])
	}

	slow := &fakeOps{hold: time.Hour}
	t0 := time.Now()
	rs = StopAll(context.Background(), []Up{{Name: "stuck"}}, slow, StopOptions{Total: 200 * time.Millisecond, Parallel: 1})
	if rs[0].Err == nil || time.Since(t0) > 10*time.Second {
		t.Errorf("a stop that never ends: %v after %s, want an error at the total", rs[0].Err, time.Since(t0))
	}
}

// An order whose stop overruns the force point (a slow unmount, a stage
// Down at its timeout) no longer keeps the lower orders running: they are
// killed at once, all together, and the straggler is waited for until
// the total and reported when it ends.
func TestStopAllKillsLowerOrdersPastAStraggler(t *testing.T) {
	ops := &fakeOps{holdFor: map[string]time.Duration{"slow": 400 * time.Millisecond}}
	up := []Up{{Name: "slow", Order: 3}, {Name: "db1", Order: 1}, {Name: "db2", Order: 1}, {Name: "app", Order: 2}}
	var mu sync.Mutex
	var reported []string
	rs := StopAll(context.Background(), up, ops, StopOptions{Timeout: time.Minute, Total: time.Second, Reserve: 800 * time.Millisecond, Parallel: 1, Report: func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, fmt.Sprintf("%s:%v", r.Name, r.Err == nil))
	}})
	for _, name := range []string{"app", "db1", "db2"} {
		if ops.stopArg[name] != "0s/true" {
			t.Errorf("%s stopped with %s, want killed at once (0s/true)", name, ops.stopArg[name])
		}
	}
	if Failed(rs) != 0 {
		t.Errorf("results %+v, want every stop done within the total", rs)
	}
	if !slices.Contains(reported, "slow:false") || reported[len(reported)-1] != "slow:true" {
		t.Errorf("reports %v, want slow reported still stopping, then stopped", reported)
	}
}

// A subhost of the same order whose turn comes only after the force
// point (it waited for a --parallel slot behind a stop that overran) is
// killed at once, not left running.
func TestStopAllKillsTheSameOrderPastTheForcePoint(t *testing.T) {
	ops := &fakeOps{holdFor: map[string]time.Duration{"slow": 400 * time.Millisecond}}
	up := []Up{{Name: "slow", Order: 1}, {Name: "b", Order: 1}}
	rs := StopAll(context.Background(), up, ops, StopOptions{Timeout: time.Minute, Total: time.Second, Reserve: 800 * time.Millisecond, Parallel: 1})
	if ops.stopArg["b"] != "0s/true" {
		t.Errorf("b stopped with %q, want killed at once (0s/true)", ops.stopArg["b"])
	}
	if Failed(rs) != 0 {
		t.Errorf("results %+v, want every stop done within the total", rs)
	}
}

// A stop left no time to power off is a kill, never a timeout of 0, which
// the stop takes for the guest's own shutdown_timeout.
func TestNoTimeLeftIsAKill(t *testing.T) {
	ops := &fakeOps{}
	var late stragglers
	if err := late.stop(context.Background(), Entry{Name: "late"}, ops, -time.Second, false); err != nil {
		t.Fatal(err)
	}
	if ops.stopArg["late"] != "0s/true" {
		t.Errorf("stopped with %q, want 0s/true", ops.stopArg["late"])
	}
}
