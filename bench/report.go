package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"
)

// summary is the median, minimum, maximum and quartiles of a series.
type summary struct {
	median, min, max float64
	q1, q3           float64 // the quartiles (nearest rank)
	n                int     // how many values
}

// summarize sorts a copy of xs; the median of an even count is the mean
// of the two middle values.
func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{median: m, min: s[0], max: s[len(s)-1], q1: s[(len(s)-1)/4], q3: s[3*(len(s)-1)/4], n: len(s)}
}

func durations(samples []sample, f func(sample) time.Duration) summary {
	xs := make([]float64, len(samples))
	for i, s := range samples {
		xs[i] = float64(f(s)) / float64(time.Millisecond)
	}
	return summarize(xs)
}

func sizes(samples []sample, f func(sample) int64) summary {
	xs := make([]float64, len(samples))
	for i, s := range samples {
		xs[i] = float64(f(s)) / 1e6
	}
	return summarize(xs)
}

// report prints the table.
// beforeWhat names what each round's "before" boot was: another build
// (-before-bin), or this build with a privileged guest (-private-users
// alone).
var beforeWhat = "-before-bin's build"

// targetMS is what the boot may cost more than that: a new stage's
// allowance, or an unprivileged guest's over a privileged one.
var targetMS = targetStageMS

// cpuCaveat qualifies the CPU comparison where the two boots do not
// count the same processes.
var cpuCaveat = ""

func report(w io.Writer, samples []sample) {
	floor := durations(samples, func(s sample) time.Duration { return s.floor })
	boot := durations(samples, func(s sample) time.Duration { return s.boot })
	detach := durations(samples, func(s sample) time.Duration { return s.detach })
	stop := durations(samples, func(s sample) time.Duration { return s.stop })
	stopCmd := durations(samples, func(s sample) time.Duration { return s.stopCmd })
	sup := sizes(samples, func(s sample) int64 { return s.supRSS })
	anon := sizes(samples, func(s sample) int64 { return s.supAnon })
	tree := sizes(samples, func(s sample) int64 { return s.treeRSS })

	fmt.Fprintf(w, "\n%d rounds:\n", len(samples))
	fmt.Fprintf(w, "%-40s %10s %10s %10s\n", "", "median", "min", "max")
	row := func(name string, s summary, unit string) {
		fmt.Fprintf(w, "%-40s %7.1f %s %7.1f %s %7.1f %s\n", name, s.median, unit, s.min, unit, s.max, unit)
	}
	row("floor: unshare+pivot_root -> rcS done", floor, "ms")
	row("boot: run --detach -> rcS done", boot, "ms")
	before := durations(samples, func(s sample) time.Duration { return s.before })
	if before.median > 0 {
		row("  the same with "+beforeWhat, before, "ms")
	}
	row("  run --detach returned", detach, "ms")
	row("stop: stop -> host clean", stop, "ms")
	if beforeStop := durations(samples, func(s sample) time.Duration { return s.beforeStop }); beforeStop.median > 0 {
		row("  the same with "+beforeWhat, beforeStop, "ms")
	}
	row("  stop returned", stopCmd, "ms")
	bootCPU := durations(samples, func(s sample) time.Duration { return s.bootCPU })
	beforeCPU := durations(samples, func(s sample) time.Duration { return s.beforeCPU })
	if bootCPU.median > 0 {
		row("CPU time of a boot (subhost's processes)", bootCPU, "ms")
		if beforeCPU.median > 0 {
			row("  the same with "+beforeWhat, beforeCPU, "ms")
		}
		row("CPU time of a stop", durations(samples, func(s sample) time.Duration { return s.stopCPU }), "ms")
	}
	row("supervisor VmRSS", sup, "MB")
	row("  of which anonymous (RssAnon)", anon, "MB")
	row("supervisor tree VmRSS (no guest)", tree, "MB")

	ratio := 0.0
	if floor.median > 0 {
		ratio = boot.median / floor.median
	}
	fmt.Fprintf(w, "\nboot/floor (medians): %.2fx  (target < %.0fx: %s)\n", ratio, targetRatio, verdict(ratio < targetRatio))
	if before.median > 0 {
		d := boot.median - before.median
		fmt.Fprintf(w, "this vs %s: %+.1f ms on the median boot  (target: <= +%.0f ms: %s)\n", beforeWhat, d, targetMS, verdict(d <= targetMS))
		// The same round's two boots share the machine's load of the
		// moment, so the median of their differences drifts less with it
		// than the difference of the medians.
		paired := durations(samples, func(s sample) time.Duration { return s.boot - s.before })
		fmt.Fprintf(w, "  median of the rounds' differences: %+.1f ms (middle half %+.1f to %+.1f ms)\n", paired.median, paired.q1, paired.q3)
		if bootCPU.median > 0 && beforeCPU.median > 0 {
			pairedCPU := durations(samples, func(s sample) time.Duration { return s.bootCPU - s.beforeCPU })
			fmt.Fprintf(w, "  CPU time: %+.2f ms on the median boot, %+.2f ms the median of the rounds' differences (middle half %+.2f to %+.2f ms)%s\n",
				bootCPU.median-beforeCPU.median, pairedCPU.median, pairedCPU.q1, pairedCPU.q3, cpuCaveat)
		}
	}
	fmt.Fprintf(w, "supervisor VmRSS median: %.1f MB  (target < %.0f MB: %s)\n", sup.median, targetRSSMB, verdict(sup.median < targetRSSMB))
	procs := make([]float64, len(samples))
	for i, s := range samples {
		procs[i] = float64(s.treeProcs)
	}
	fmt.Fprintf(w, "supervisor tree: %.0f process(es) besides the guest (median)\n", summarize(procs).median)

	// Where the boot goes: each stage's Up, as the runner recorded it.
	var names []string
	for _, s := range samples {
		for _, st := range s.stages {
			if !slices.Contains(names, st.name) {
				names = append(names, st.name)
			}
		}
	}
	if len(names) > 0 {
		fmt.Fprintf(w, "stage Up durations (status --json, medians):")
		sum := 0.0
		for _, n := range names {
			xs := make([]float64, len(samples))
			for i, s := range samples {
				for _, st := range s.stages {
					if st.name == n {
						xs[i] = float64(st.ms)
					}
				}
			}
			m := summarize(xs).median
			sum += m
			fmt.Fprintf(w, " %s %.0f ms,", n, m)
		}
		fmt.Fprintf(w, " sum %.0f ms of %.0f ms boot\n", sum, boot.median)
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
func mb(n int64) string         { return fmt.Sprintf("%.1fMB", float64(n)/1e6) }
func numCPU() int               { return runtime.NumCPU() }

// clock is a wall-clock time as the logs print it (UTC).
func clock(t time.Time) string { return t.UTC().Format("15:04:05.000") }
