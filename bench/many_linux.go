package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// manyDeadline bounds both the boot and the stop of -many's subhosts.
const manyDeadline = 3 * time.Minute

// manyPollEvery is how often -many looks for the guests' markers, and
// for a clean host after the stops.
const manyPollEvery = 10 * time.Millisecond

// instance is one of -many's subhosts.
type instance struct {
	name, home, image string
	ready, returned   time.Duration // since the common launch; 0: not seen
	err               error
}

// runMany boots n subhosts at once, each from its own sparse copy of the
// image with one interface on the bridge, waits for every guest's ready
// marker, then stops them all at once and waits until the host is clean.
// It reports how many came up, the median and slowest time to ready, and
// how long the stop took.
func (b *bench) runMany(ctx context.Context, n int, config func(image, mac string) string) error {
	var all []*instance
	for i := range n {
		in := &instance{
			name:  manyName(b.name, i),
			home:  filepath.Join(b.scratch, fmt.Sprintf("many-%03d", i)),
			image: filepath.Join(b.scratch, fmt.Sprintf("many-%03d.raw", i)),
		}
		if err := os.Mkdir(in.home, 0o755); err != nil {
			return err
		}
		if err := runQuiet("cp", "--sparse=always", b.image, in.image); err != nil {
			return err
		}
		mac := fmt.Sprintf("02:5c:%s:%s:%02x:%02x", b.name[3:5], b.name[5:7], i>>8, i&0xff)
		if err := os.WriteFile(filepath.Join(in.home, "config"), []byte(config(in.image, mac)), 0o644); err != nil {
			return err
		}
		all = append(all, in)
	}
	b.undo = append(b.undo, func() error { return b.stopAllIfUp(all) })

	fmt.Printf("subhost bench: %d subhosts booted at once, busybox guests each on its own copy of a 64M MBR image on tmpfs, pipeline pretend-boot, 1 bridge in netns %s\n", n, b.netns)
	fmt.Printf("load average before: %s (%d CPUs)\n", loadavg(), numCPU())
	t0 := time.Now()
	var mu sync.Mutex // guards the instances' fields while commands run
	var wg sync.WaitGroup
	for _, in := range all {
		cmd := b.inNet("run", "--detach", "--pipeline", "pretend-boot", "--home", in.home, in.name)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			in.err = err
			continue
		}
		wg.Go(func() {
			err := cmd.Wait()
			mu.Lock()
			defer mu.Unlock()
			in.returned = time.Since(t0)
			if err != nil {
				in.err = fmt.Errorf("subhost run --detach: %v: %s", err, tail(out.String()))
			}
		})
	}
	// One poller for every marker, not one each: a hundred pollers would
	// take the CPUs from the boots they time.
	for deadline := t0.Add(manyDeadline); ; time.Sleep(manyPollEvery) {
		mu.Lock()
		pending := 0
		for _, in := range all {
			if in.err == nil && in.ready == 0 {
				if exists(filepath.Join(in.home, "live", MarkerPath)) {
					in.ready = time.Since(t0)
				} else {
					pending++
				}
			}
		}
		mu.Unlock()
		if pending == 0 {
			break
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			mu.Lock()
			for _, in := range all {
				if in.err == nil && in.ready == 0 {
					in.err = fmt.Errorf("no ready marker after %v", time.Since(t0).Round(time.Millisecond))
				}
			}
			mu.Unlock()
			break
		}
	}
	upIn := time.Since(t0)
	wg.Wait()
	var ready, returned []float64
	var failed []string
	for _, in := range all {
		if in.err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", in.name, in.err))
			continue
		}
		ready = append(ready, float64(in.ready)/float64(time.Millisecond))
		returned = append(returned, float64(in.returned)/float64(time.Millisecond))
	}
	r, d := summarize(ready), summarize(returned)
	fmt.Printf("up: %d/%d, the last %.1f s after the launch\n", len(ready), n, upIn.Seconds())
	fmt.Printf("per subhost, launch -> rcS done:      median %6.0f ms, fastest %6.0f ms, slowest %6.0f ms\n", r.median, r.min, r.max)
	fmt.Printf("per subhost, run --detach returned:   median %6.0f ms, fastest %6.0f ms, slowest %6.0f ms\n", d.median, d.min, d.max)
	for _, f := range failed {
		fmt.Println("  failed:", f)
	}

	t0 = time.Now()
	stopErrs := make([]error, len(all))
	for i, in := range all {
		wg.Go(func() {
			if out, err := b.inNet("stop", in.name).CombinedOutput(); err != nil {
				stopErrs[i] = fmt.Errorf("%v: %s", err, tail(string(out)))
			}
		})
	}
	wg.Wait()
	returnedIn := time.Since(t0)
	for deadline := t0.Add(manyDeadline); ; time.Sleep(manyPollEvery) {
		left := 0
		for _, in := range all {
			if !instanceClean(in) {
				left++
			}
		}
		if left == 0 {
			break
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			failed = append(failed, fmt.Sprintf("%d subhosts not clean after their stop", left))
			break
		}
	}
	fmt.Printf("stopped all at once: every stop returned after %.1f s, host clean after %.1f s\n", returnedIn.Seconds(), time.Since(t0).Seconds())
	fmt.Printf("load average after:  %s\n", loadavg())
	for i, err := range stopErrs {
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: stop: %v", all[i].name, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d subhosts failed: %s", len(failed), n, failed[0])
	}
	return nil
}

// instanceClean reports whether nothing of in is left: its netns, state
// directory, mounts and loop devices.
func instanceClean(in *instance) bool {
	return !netnsExists(in.name) && !exists(filepath.Join("/run/subhost", in.name)) &&
		len(mountsUnder(in.home)) == 0 && len(loopsBackedBy(in.image)) == 0
}

// stopAllIfUp is the cleanup of an interrupted -many run: every subhost
// still up is stopped (forced), all at once.
func (b *bench) stopAllIfUp(all []*instance) error {
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	for _, in := range all {
		if instanceClean(in) {
			continue
		}
		wg.Go(func() {
			if out, err := b.inNet("stop", "--force", "--timeout", "5s", in.name).CombinedOutput(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("%s: %v: %s", in.name, err, tail(string(out))))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		slices.Sort(errs)
		return fmt.Errorf("stop: %s", strings.Join(errs, "; "))
	}
	return nil
}

// manyName is the name of -many's i-th subhost.
func manyName(base string, i int) string { return fmt.Sprintf("%sm%03d", base, i) }

// manyTmpfsSize is the scratch tmpfs's size for n image copies (each
// holds a few MB of a 64M sparse image) besides the usual 512M.
func manyTmpfsSize(n int) string {
	return fmt.Sprintf("size=%dm", 512+8*n)
}
