package main

import (
	"strings"
	"testing"
)

func TestParseTimelineAndReport(t *testing.T) {
	out := "subhost x running\nboot timeline:\n" +
		"       ms     step  who                    what\n" +
		"      0.0     +0.0  cli                    exec (estimate: less its CPU time so far)\n" +
		"      5.2     +5.2  supervisor             main\n" +
		"     50.0    +44.8  stage init             up returned\n" +
		"     51.1     +1.1  supervisor             guest PID 1 (7963) runs: ready\n"
	tl, order := parseTimeline(out)
	if len(order) != 4 || tl["stage init up returned"] != 50 || tl["supervisor guest PID 1 runs: ready"] != 51.1 {
		t.Fatalf("parsed %v in order %q", tl, order)
	}
	if tl, _ := parseTimeline("no table here"); tl != nil {
		t.Fatalf("parsed %v from output without a timeline", tl)
	}
	other := timeline{"cli exec (estimate: less its CPU time so far)": 0, "supervisor main": 7.2, "stage init up returned": 40, "supervisor guest PID 1 runs: ready": 41.1}
	var b strings.Builder
	reportTimeline(&b, []timeline{tl, other}, nil, order)
	if !strings.Contains(b.String(), "    45.0    +38.8  stage init up returned") {
		t.Fatalf("report:\n%s", b.String())
	}
	// Beside other boots: their median and the difference, "-" for a
	// mark they lack.
	b.Reset()
	reportTimeline(&b, []timeline{tl, other}, []timeline{{"supervisor main": 6, "stage init up returned": 30}}, order)
	for _, want := range []string{"    45.0    +38.8     30.0    +15.0  stage init up returned", "       -           supervisor guest PID 1 runs: ready"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("report beside others lacks %q:\n%s", want, b.String())
		}
	}
}
