package cgroups

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// BenchmarkSetup is what the cgroup stage's Up costs a boot: every
// hierarchy's cgroups, the default limit, the v1 device rules and the
// cgroup2 device program (Remove, Down's part, is timed apart).
func BenchmarkSetup(b *testing.B) {
	stagetest.RequireRoot(b)
	name := fmt.Sprintf("cgbench%d", os.Getpid())
	disks := []sdk.Device{{GuestName: "vda", Major: 7, Minor: 250, ReadOnly: true}}
	var removing time.Duration
	for b.Loop() {
		if _, err := Setup(name, "", Defaults(), disks); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		t := time.Now()
		if err := Remove(name, "", nil); err != nil {
			b.Fatal(err)
		}
		removing += time.Since(t)
		b.StartTimer()
	}
	b.ReportMetric(float64(removing.Microseconds())/float64(b.N), "remove-µs/op")
}

// BenchmarkCheckHost is what the cgroup stage's Validate costs.
func BenchmarkCheckHost(b *testing.B) {
	for b.Loop() {
		if err := CheckHost("", Defaults()); err != nil {
			b.Fatal(err)
		}
	}
}
