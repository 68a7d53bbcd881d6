package autostart

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// StopOps is how one subhost is stopped.
type StopOps interface {
	// Stop powers the guest off, giving it timeout (killing it at once
	// when force), and brings every stage down.
	Stop(ctx context.Context, name string, timeout time.Duration, force bool) error
}

// Stop bounds (see StopOptions).
const (
	// DefaultStopTimeout is the time to power off of a guest whose own
	// is not known (Up.Timeout 0): the init stage's default.
	DefaultStopTimeout = 30 * time.Second
	DefaultStopTotal   = 90 * time.Second
	// ForceReserve is the part of the total kept for killing guests and
	// bringing stages down: a guest's power-off never eats into it.
	ForceReserve = 15 * time.Second
)

// StopOptions tune StopAll.
type StopOptions struct {
	// Timeout, when set, is how long every guest gets to power off
	// before it is killed; unset, each gets its own (Up.Timeout), as a
	// plain stop gives it. Either is shortened as the total runs out.
	Timeout time.Duration
	// Total bounds the whole stop: once less than Reserve of it is left
	// (the force point), the guests not yet stopped are killed at once,
	// whatever their order; at Total, StopAll returns, reporting those
	// not down yet as failed.
	Total time.Duration
	// Reserve is ForceReserve unless set (tests).
	Reserve  time.Duration
	Parallel int
	Report   func(Result)
}

// Up is a subhost that is up (running or hibernating), with its order
// (its enrolment's, or Unenrolled) and its guest's own time to power off
// (its pipeline's shutdown_timeout; 0 for DefaultStopTimeout).
type Up struct {
	Name    string
	Order   int
	Timeout time.Duration
}

// Unenrolled is the order of a subhost that is not enrolled: started by
// hand after boot, it is stopped first.
const Unenrolled = math.MaxInt

// StopAll stops the subhosts in descending order (those of equal order in
// parallel), within opts.Total. An order whose stops are not all done at
// the force point is not waited for any longer: its stragglers go on in
// the background (a stage half way down is best left to finish), and
// every subhost of the lower orders is killed at once, all together,
// rather than left running because one stop above them overran. The
// stragglers are then waited for until the total; each is reported once
// more when it ends.
func StopAll(ctx context.Context, up []Up, ops StopOps, opts StopOptions) []Result {
	if opts.Total <= 0 {
		opts.Total = DefaultStopTotal
	}
	if opts.Reserve <= 0 {
		opts.Reserve = ForceReserve
	}
	deadline := time.Now().Add(opts.Total)
	forceAt := deadline.Add(-opts.Reserve)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	entries := make([]Entry, len(up))
	timeout := make(map[string]time.Duration, len(up))
	for i, u := range up {
		entries[i] = Entry{Name: u.Name, Order: u.Order}
		timeout[u.Name] = cmp.Or(opts.Timeout, u.Timeout, DefaultStopTimeout)
	}
	waves := Waves(entries)
	slices.Reverse(waves)
	var late stragglers
	var results []Result
	for i, wave := range waves {
		if time.Now().Before(forceAt) {
			waveCtx, cancelWave := context.WithDeadlineCause(ctx, forceAt, errForcePoint)
			results = append(results, runWave(waveCtx, wave, max(opts.Parallel, 1), opts.Report, func(waveCtx context.Context, e Entry) (string, error) {
				if context.Cause(waveCtx) == errForcePoint {
					// Its turn (a --parallel slot) came after the
					// force point: killed at once, as the rest.
					return "", late.stop(ctx, e, ops, 0, true)
				}
				return "", late.stop(waveCtx, e, ops, min(timeout[e.Name], time.Until(forceAt)), false)
			})...)
			cancelWave()
			continue
		}
		// Past the force point: the rest are killed, all at once.
		rest := slices.Concat(waves[i:]...)
		results = append(results, runWave(ctx, rest, len(rest), opts.Report, func(ctx context.Context, e Entry) (string, error) {
			return "", late.stop(ctx, e, ops, 0, true)
		})...)
		break
	}
	late.wait(ctx, results, opts.Report)
	return results
}

// stragglers are the stops still under way when their wait ended.
type stragglers struct {
	mu   sync.Mutex
	left map[string]straggler
}

type straggler struct {
	started time.Time
	done    <-chan error
}

// stop runs one stop, giving up waiting for it (not cancelling it) when
// ctx ends; a stop given up on is kept to be waited for at the end.
func (l *stragglers) stop(ctx context.Context, e Entry, ops StopOps, timeout time.Duration, force bool) error {
	if ctx.Err() != nil {
		return fmt.Errorf("not stopped: the total time for the stop ran out first")
	}
	// No time left to power off is a kill: a timeout of 0 would mean
	// the guest's own (its shutdown_timeout) to the stop.
	if timeout <= 0 {
		timeout, force = 0, true
	}
	done := make(chan error, 1)
	started := time.Now()
	go func() { done <- ops.Stop(context.WithoutCancel(ctx), e.Name, timeout, force) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.left == nil {
			l.left = map[string]straggler{}
		}
		l.left[e.Name] = straggler{started: started, done: done}
		if context.Cause(ctx) == errForcePoint {
			return fmt.Errorf("still stopping at the force point; the subhosts after it are killed, and this one is waited for until the total")
		}
		return fmt.Errorf("still stopping when the total time for the stop ran out")
	}
}

// errForcePoint ends the wait for an order's stops at the force point.
var errForcePoint = errors.New("force point")

// wait waits, until ctx ends, for the stops given up on, and puts the
// outcome of those that end in results (reporting it).
func (l *stragglers) wait(ctx context.Context, results []Result, report func(Result)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, r := range results {
		s, ok := l.left[r.Name]
		if !ok {
			continue
		}
		select {
		case err := <-s.done:
			results[i].Err, results[i].Took = err, time.Since(s.started)
		case <-ctx.Done():
			results[i].Err = fmt.Errorf("still stopping when the total time for the stop ran out")
		}
		if report != nil {
			report(results[i])
		}
	}
}
