package autostart

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// StartOps is how one subhost is looked at and started.
type StartOps interface {
	// Running reports whether the subhost is up already (running or
	// hibernating is left alone: starting is idempotent).
	Running(name string) bool
	// Bridges lists the host bridges the subhost plugs into.
	Bridges(e Entry) ([]string, error)
	// BridgeExists reports whether a bridge exists (now).
	BridgeExists(name string) bool
	// Start starts the subhost and returns once its guest runs.
	Start(ctx context.Context, e Entry) error
}

// DefaultBridgeWait bounds the wait for a subhost's bridges: at host boot
// they may come up after subhost.service does.
const DefaultBridgeWait = 30 * time.Second

// StartOptions tune Start.
type StartOptions struct {
	// Group, when set, starts only the entries of that group.
	Group string
	// Parallel is how many subhosts of equal order start at once (>= 1).
	Parallel int
	// BridgeWait bounds the wait for bridges; 0 = DefaultBridgeWait.
	BridgeWait time.Duration
	// Report is told of each subhost's outcome as it happens.
	Report func(Result)
}

// Result is what became of one subhost.
type Result struct {
	Name  string
	Order int
	// Skipped says why nothing was done ("already running"), when so.
	Skipped string
	Err     error
	Took    time.Duration
}

// Waves groups entries of equal order, ascending.
func Waves(entries []Entry) [][]Entry {
	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, func(a, b Entry) int { return cmp.Compare(a.Order, b.Order) })
	var waves [][]Entry
	for i, e := range sorted {
		if i == 0 || e.Order != sorted[i-1].Order {
			waves = append(waves, nil)
		}
		waves[len(waves)-1] = append(waves[len(waves)-1], e)
	}
	return waves
}

// Start starts the entries in ascending order, those of equal order in
// parallel (up to opts.Parallel), waiting after each order for the longest
// delay among its subhosts that started. A subhost that fails is reported
// and the rest still start. It returns every result, in start order.
func Start(ctx context.Context, entries []Entry, ops StartOps, opts StartOptions) []Result {
	if opts.Group != "" {
		entries = slices.DeleteFunc(slices.Clone(entries), func(e Entry) bool { return e.Group != opts.Group })
	}
	waves := Waves(entries)
	var results []Result
	for i, wave := range waves {
		rs := runWave(ctx, wave, max(opts.Parallel, 1), opts.Report, func(ctx context.Context, e Entry) (string, error) {
			return startOne(ctx, e, ops, opts)
		})
		results = append(results, rs...)
		var delay time.Duration
		for k, r := range rs {
			if r.Err == nil && r.Skipped == "" {
				delay = max(delay, wave[k].Delay)
			}
		}
		if delay > 0 && i < len(waves)-1 {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
			}
		}
	}
	return results
}

func startOne(ctx context.Context, e Entry, ops StartOps, opts StartOptions) (string, error) {
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	if ops.Running(e.Name) {
		return "already running", nil
	}
	bridges, err := ops.Bridges(e)
	if err != nil {
		return "", err
	}
	if err := waitBridges(ctx, bridges, ops, opts.BridgeWait); err != nil {
		return "", err
	}
	return "", ops.Start(ctx, e)
}

// waitBridges waits until every bridge exists, polling, at most wait.
func waitBridges(ctx context.Context, bridges []string, ops StartOps, wait time.Duration) error {
	if wait <= 0 {
		wait = DefaultBridgeWait
	}
	deadline := time.Now().Add(wait)
	for {
		var missing []string
		for _, b := range bridges {
			if !ops.BridgeExists(b) {
				missing = append(missing, b)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bridge %s does not exist after waiting %s", strings.Join(missing, ", "), wait)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// runWave runs fn for every entry, at most parallel at once, and returns
// the results in the entries' order.
func runWave(ctx context.Context, wave []Entry, parallel int, report func(Result), fn func(context.Context, Entry) (string, error)) []Result {
	results := make([]Result, len(wave))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for k, e := range wave {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			skipped, err := fn(ctx, e)
			results[k] = Result{Name: e.Name, Order: e.Order, Skipped: skipped, Err: err, Took: time.Since(t0)}
			if report != nil {
				report(results[k])
			}
		}()
	}
	wg.Wait()
	return results
}

// Failed counts the results with an error.
func Failed(rs []Result) int {
	n := 0
	for _, r := range rs {
		if r.Err != nil {
			n++
		}
	}
	return n
}
