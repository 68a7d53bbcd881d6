package main

import (
	"strings"
	"testing"

	"github.com/subhost/subhost/internal/cgroups"
)

func i64(n int64) *int64     { return &n }
func f64(f float64) *float64 { return &f }

func TestResourcesReadably(t *testing.T) {
	r := report{
		Limits: &cgroups.InForce{MemoryMax: i64(64 << 20), PidsMax: i64(40), CPUMax: f64(0.5)},
		Usage:  &cgroups.Usage{MemoryBytes: i64(12<<20 + 300<<10), MemoryPeak: i64(40 << 20), OOMKills: i64(1), Pids: i64(7), CPUSeconds: f64(1.523)},
	}
	var b strings.Builder
	writeResources(&b, r)
	want := "  memory   12.3M (peak 40M) of 64M, 1 OOM kill\n  pids     7 of 40\n  cpu      1.52 s used, limit 0.5 CPU\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	if got := memoryColumn(r); got != "12.3M/64M" {
		t.Errorf("memory column %q", got)
	}
	if got := memoryColumn(report{}); got != "-" {
		t.Errorf("memory column without cgroups %q", got)
	}
	for n, want := range map[int64]string{0: "0", 1023: "1023", 1024: "1K", 1536: "1.5K", 5 << 30: "5G", 3 << 40: "3T"} {
		if got := human(n); got != want {
			t.Errorf("human(%d) = %q, want %q", n, got, want)
		}
	}
}
