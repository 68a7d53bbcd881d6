package autostart

import (
	"context"
	"fmt"
	"math"
	"slices"
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
	DefaultStopTimeout = 30 * time.Second
	DefaultStopTotal   = 90 * time.Second
	// ForceReserve is the part of the total kept for killing guests and
	// bringing stages down: a guest's power-off never eats into it.
	ForceReserve = 15 * time.Second
)

// StopOptions tune StopAll.
type StopOptions struct {
	// Timeout is how long each guest gets to power off before it is
	// killed (shortened as the total runs out).
	Timeout time.Duration
	// Total bounds the whole stop: once less than ForceReserve of it is
	// left, the guests not yet stopped are killed at once; at Total,
	// StopAll returns, reporting those not down yet as failed.
	Total    time.Duration
	Parallel int
	Report   func(Result)
}

// Up is a subhost that is up (running or hibernating), with its order:
// its enrolment's, or Unenrolled.
type Up struct {
	Name  string
	Order int
}

// Unenrolled is the order of a subhost that is not enrolled: started by
// hand after boot, it is stopped first.
const Unenrolled = math.MaxInt

// StopAll stops the subhosts in descending order (those of equal order in
// parallel), within opts.Total.
func StopAll(ctx context.Context, up []Up, ops StopOps, opts StopOptions) []Result {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultStopTimeout
	}
	if opts.Total <= 0 {
		opts.Total = DefaultStopTotal
	}
	deadline := time.Now().Add(opts.Total)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	entries := make([]Entry, len(up))
	for i, u := range up {
		entries[i] = Entry{Name: u.Name, Order: u.Order}
	}
	waves := Waves(entries)
	slices.Reverse(waves)
	var results []Result
	for _, wave := range waves {
		rs := runWave(ctx, wave, max(opts.Parallel, 1), opts.Report, func(ctx context.Context, e Entry) (string, error) {
			timeout := min(opts.Timeout, time.Until(deadline)-ForceReserve)
			force := timeout <= 0
			return "", stopBounded(ctx, e.Name, ops, max(timeout, 0), force)
		})
		results = append(results, rs...)
	}
	return results
}

// stopBounded runs one stop, giving up on it (not cancelling it: a stage
// half way down is best left to finish) when ctx ends.
func stopBounded(ctx context.Context, name string, ops StopOps, timeout time.Duration, force bool) error {
	if ctx.Err() != nil {
		return fmt.Errorf("not stopped: the total time for the stop ran out first")
	}
	done := make(chan error, 1)
	go func() { done <- ops.Stop(context.WithoutCancel(ctx), name, timeout, force) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("still stopping when the total time for the stop ran out")
	}
}
