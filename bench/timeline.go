package main

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// timeline is one boot's `subhost run --timings` output: each mark's
// milliseconds since the CLI was executed, by mark.
type timeline map[string]float64

// pidInMark is the guest's PID in a mark's text, which differs per boot.
var pidInMark = regexp.MustCompile(` \(\d+\)`)

// parseTimeline reads the table `run --timings` prints on standard error
// ("boot timeline:", a header, then "ms step who what" lines), in the
// order printed. It returns nil when there is none.
func parseTimeline(out string) (timeline, []string) {
	_, table, ok := strings.Cut(out, "boot timeline:\n")
	if !ok {
		return nil, nil
	}
	tl := timeline{}
	var order []string
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		ms, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		mark := pidInMark.ReplaceAllString(strings.Join(f[2:], " "), "")
		if _, dup := tl[mark]; dup {
			continue
		}
		tl[mark] = ms
		order = append(order, mark)
	}
	return tl, order
}

// reportTimeline prints, for every mark seen, the median of its time since
// the CLI was executed over the rounds, in the order of those medians: the
// boot's breakdown. With others (the rounds' other boots: -before-bin's
// build, or the twin), each mark's median there and the difference too.
func reportTimeline(w io.Writer, rounds, others []timeline, firstOrder []string) {
	if len(rounds) == 0 {
		return
	}
	type row struct {
		mark       string
		med, other summary
	}
	median := func(tls []timeline, mark string) summary {
		var xs []float64
		for _, tl := range tls {
			if ms, ok := tl[mark]; ok {
				xs = append(xs, ms)
			}
		}
		return summarize(xs)
	}
	var rows []row
	for _, mark := range firstOrder {
		rows = append(rows, row{mark, median(rounds, mark), median(others, mark)})
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		switch {
		case a.med.median < b.med.median:
			return -1
		case a.med.median > b.med.median:
			return 1
		}
		return 0
	})
	fmt.Fprintf(w, "\nboot timeline (run --timings; ms since the CLI's exec, medians of %d rounds; step = since the row above", len(rounds))
	if len(others) > 0 {
		fmt.Fprintf(w, "; other = %s, - where it has no such mark", beforeWhat)
	}
	fmt.Fprintf(w, "):\n%8s %8s", "ms", "step")
	if len(others) > 0 {
		fmt.Fprintf(w, " %8s %8s", "other", "diff")
	}
	fmt.Fprintf(w, "  %s\n", "who / what")
	prev := 0.0
	for _, r := range rows {
		fmt.Fprintf(w, "%8.1f %+8.1f", r.med.median, r.med.median-prev)
		switch {
		case len(others) == 0:
		case r.other.n == 0:
			fmt.Fprintf(w, " %8s %8s", "-", "")
		default:
			fmt.Fprintf(w, " %8.1f %+8.1f", r.other.median, r.med.median-r.other.median)
		}
		fmt.Fprintf(w, "  %s\n", r.mark)
		prev = r.med.median
	}
}
