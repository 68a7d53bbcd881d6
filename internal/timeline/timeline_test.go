package timeline

import (
	"strings"
	"testing"
	"time"
)

func TestMarksComeOutInTimeOrder(t *testing.T) {
	r := New()
	t0 := time.Now()
	r.AddAt(t0.Add(3*time.Millisecond), "supervisor", "third")
	r.AddAt(t0, "cli", "first")
	r.Merge([]Mark{{At: t0.Add(time.Millisecond).UnixMicro(), Who: "stage init", What: "second"}})
	var whats []string
	for _, m := range r.Marks() {
		whats = append(whats, m.What)
	}
	if got := strings.Join(whats, ","); got != "first,second,third" {
		t.Fatalf("order %s, want first,second,third", got)
	}
	var b strings.Builder
	Write(&b, r.Marks())
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 lines, got:\n%s", b.String())
	}
	if !strings.Contains(lines[3], "3.0") || !strings.Contains(lines[3], "+2.0") || !strings.Contains(lines[3], "third") {
		t.Fatalf("last line %q: want 3.0 ms since the first mark, +2.0 since the one before", lines[3])
	}
}

func TestNilRecorderRecordsNothing(t *testing.T) {
	var r *Recorder
	r.Add("cli", "main")
	r.Merge([]Mark{{Who: "x"}})
	if m := r.Marks(); m != nil {
		t.Fatalf("a nil recorder returned %v", m)
	}
}

func TestProcessStartIsBeforeNow(t *testing.T) {
	now := time.Now()
	start := ProcessStart()
	if start.After(time.Now()) {
		t.Fatalf("process start %v is in the future", start)
	}
	// A test binary has run for at least its own initialisation, and
	// surely for less than an hour of CPU.
	if now.Sub(start) > time.Hour {
		t.Fatalf("process start %v is implausibly early", start)
	}
}
