package integration

import (
	"context"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/runner"
)

// BenchmarkRunStop4NoopStages measures the runner's own cost: a pipeline
// of four no-op stage plugins brought up (plugins started concurrently,
// validated, Up in order, state written before and after each call, plugins
// killed) and stopped again (plugins started again, Down in reverse, state
// removed), end to end in one process. The per-stage figure is the total
// divided by four.
func BenchmarkRunStop4NoopStages(b *testing.B) {
	f := newBenchFixture(b, []string{"a", "b", "c", "d"})
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		plan := f.plan("bench")
		if _, err := f.r.Run(ctx, plan, runner.RunOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := f.r.Stop(ctx, "bench", runner.StopOptions{Timeout: time.Second}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/4/1000, "ms/stage")
}
