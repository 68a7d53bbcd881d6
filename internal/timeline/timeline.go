// Package timeline records when the steps of a boot happen, in every
// process that takes part (the CLI, the supervisor, the stage plugins as
// the supervisor sees them start and answer), for `subhost run --timings`
// and the benchmark's breakdown. Marks carry wall-clock times, so marks
// taken in different processes line up on one axis.
package timeline

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Mark is one point of the timeline.
type Mark struct {
	// At is the time in microseconds since the Unix epoch.
	At int64 `json:"at"`
	// Who is the process or part that did it: "cli", "supervisor",
	// "stage mount-loop", "guest".
	Who  string `json:"who"`
	What string `json:"what"`
}

// Time is the mark's time.
func (m Mark) Time() time.Time { return time.UnixMicro(m.At) }

// Recorder collects marks; safe for concurrent use. A nil Recorder
// records nothing, so that code can mark unconditionally.
type Recorder struct {
	mu    sync.Mutex
	marks []Mark
}

// New returns an empty Recorder.
func New() *Recorder { return &Recorder{} }

// Add marks now.
func (r *Recorder) Add(who, what string) { r.AddAt(time.Now(), who, what) }

// AddAt marks a time taken earlier.
func (r *Recorder) AddAt(t time.Time, who, what string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.marks = append(r.marks, Mark{At: t.UnixMicro(), Who: who, What: what})
	r.mu.Unlock()
}

// Merge adds marks recorded elsewhere (another process's).
func (r *Recorder) Merge(marks []Mark) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.marks = append(r.marks, marks...)
	r.mu.Unlock()
}

// Marks returns a copy of the marks in time order.
func (r *Recorder) Marks() []Mark {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	out := append([]Mark(nil), r.marks...)
	r.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out
}

// Write prints marks as a table: milliseconds since the first mark, the
// step since the previous one, who, what.
func Write(w io.Writer, marks []Mark) {
	if len(marks) == 0 {
		return
	}
	origin, prev := marks[0].At, marks[0].At
	fmt.Fprintf(w, "%9s %8s  %-22s %s\n", "ms", "step", "who", "what")
	for _, m := range marks {
		fmt.Fprintf(w, "%9.1f %+8.1f  %-22s %s\n", float64(m.At-origin)/1000, float64(m.At-prev)/1000, m.Who, m.What)
		prev = m.At
	}
}

// ProcessStart estimates when this process was executed: now less the
// time its main thread has so far been running or waiting to run
// (/proc/self/schedstat). That is the cost of exec, the Go runtime's
// start and every package's initialisation, as long as the process has
// not slept. It returns now when the kernel does not keep schedstat.
func ProcessStart() time.Time {
	now := time.Now()
	data, err := os.ReadFile("/proc/self/schedstat")
	if err != nil {
		return now
	}
	f := strings.Fields(string(bytes.TrimSpace(data)))
	if len(f) < 2 {
		return now
	}
	run, err1 := strconv.ParseInt(f[0], 10, 64)
	wait, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return now
	}
	return now.Add(-time.Duration(run + wait))
}
