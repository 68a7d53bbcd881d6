// Package events is the line protocol between a supervisor and the command
// that started it: JSON lines on a pipe. It is its own package, with no
// dependency beyond the standard library and the timeline, because the
// small front that `subhost run --detach` starts with (cmd/subhost-front)
// reads it too, and that program must start in about a millisecond.
package events

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"

	"github.com/subhost/subhost/internal/timeline"
)

// FDFlag is the full CLI's hidden flag that the front passes: the CLI
// reports on this descriptor and becomes the supervisor itself instead of
// starting one (see cmd/subhost-front).
const FDFlag = "--events-fd"

// Event is one line of the supervisor's report to the command that
// started it.
type Event struct {
	Progress string `json:"progress,omitempty"`
	Ready    bool   `json:"ready,omitempty"`
	PID      int    `json:"pid,omitempty"`
	Error    string `json:"error,omitempty"`
	Kind     string `json:"kind,omitempty"`
	Guest    string `json:"guest,omitempty"`  // how the guest ended
	Status   string `json:"status,omitempty"` // the subhost's status at the end
	// Timeline is the supervisor's part of the boot's timeline.
	Timeline []timeline.Mark `json:"timeline,omitempty"`
	// Log is the supervisor's log, sent once it writes there.
	Log string `json:"log,omitempty"`
	// Stderr and Exit end a CLI that reports to a front (FDFlag): what it
	// would have written on standard error, and its exit status.
	Stderr string `json:"stderr,omitempty"`
	Exit   int    `json:"exit,omitempty"`
}

// Writer sends events up the pipe; safe for concurrent use, and a no-op
// without a pipe or once the reader has gone.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter sends events to w (nil: nowhere).
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Send writes one event.
func (ew *Writer) Send(e Event) {
	if ew == nil || ew.w == nil {
		return
	}
	data, _ := json.Marshal(e)
	ew.mu.Lock()
	defer ew.mu.Unlock()
	ew.w.Write(append(data, '\n'))
}

// Write makes the runner's progress lines events.
func (ew *Writer) Write(p []byte) (int, error) {
	ew.Send(Event{Progress: string(p)})
	return len(p), nil
}

// Reader reads a supervisor's events off its pipe.
type Reader struct {
	sc *bufio.Scanner
	// Log is the supervisor's log, once an event named it ("" before:
	// until its boot begins, it writes to the standard error it was
	// started with).
	Log string
}

// NewReader reads events from r.
func NewReader(r io.Reader) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20) // a timeline is one long line
	return &Reader{sc: sc}
}

// Next returns the next event, and false once the pipe is closed (the
// supervisor ended, or is running on its own). A line that is not an
// event is passed over.
func (r *Reader) Next() (Event, bool) {
	for r.sc.Scan() {
		var e Event
		if json.Unmarshal(r.sc.Bytes(), &e) != nil {
			continue
		}
		if e.Log != "" {
			r.Log = e.Log
		}
		return e, true
	}
	return Event{}, false
}
