// Package stopreq is how `subhost stop` asks a subhost's supervisor to
// power the guest off and take the stages down: the request it leaves in
// the subhost's state directory, the SIGTERM, and the wait for the
// supervisor to end. It needs neither the sdk nor gRPC, so that the front
// (cmd/subhost-front) can do a plain stop of a supervised subhost itself:
// the full CLI takes about 4 ms to start on a small host, and the guest
// heard of the stop only after that.
package stopreq

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/subhost/subhost/internal/proc"
)

// Request is what a stop asks of a supervisor before it sends SIGTERM:
// how long the guest gets, and whether to kill it at once.
type Request struct {
	TimeoutMS int64 `json:"timeout_ms"`
	Force     bool  `json:"force,omitempty"`
}

// File is the request's name in the subhost's state directory.
const File = "stop.json"

// Write leaves r for the supervisor of the subhost whose state directory
// is dir.
func Write(dir string, r Request) error {
	data, _ := json.Marshal(r)
	return os.WriteFile(filepath.Join(dir, File), data, 0o600)
}

// Take reads and removes the request left in dir; ok is false when there
// is none (a plain SIGTERM from a service manager).
func Take(dir string) (r Request, ok bool) {
	path := filepath.Join(dir, File)
	data, err := os.ReadFile(path)
	if err != nil {
		return r, false
	}
	os.Remove(path)
	return r, json.Unmarshal(data, &r) == nil
}

// DefaultGuestTimeout is how long a guest gets to power off when neither
// the stop nor the stage that launched it says.
const DefaultGuestTimeout = 30 * time.Second

// GuestTimeout is how long a guest gets to power off: what the stop asked
// for, else what the stage that launched it gave its PID 1 (init's
// shutdown_timeout, in the boot record: its rc 0 and the end of every
// process fit in it), else DefaultGuestTimeout. A guest killed sooner
// than its PID 1 expects loses the end of its shutdown (a database's
// clean stop, the sync).
func GuestTimeout(asked time.Duration, guestStopTimeoutMS int64) time.Duration {
	switch {
	case asked > 0:
		return asked
	case guestStopTimeoutMS > 0:
		return time.Duration(guestStopTimeoutMS) * time.Millisecond
	}
	return DefaultGuestTimeout
}

// SupervisorWait is how long a stop waits for the supervisor it asked:
// the guest's time to power off and the Downs; a forced stop kills the
// guest at once, and has only the Downs to wait for, whatever the guest's
// own timeout.
func SupervisorWait(asked time.Duration, force bool, guestStopTimeoutMS int64) time.Duration {
	if force {
		return max(asked, 0) + 10*time.Second
	}
	return GuestTimeout(asked, guestStopTimeoutMS) + 2*time.Minute
}

// Supervised is what a stop reads of a subhost's state: the supervisor
// to ask, the boot it was recorded in, and how long the guest gets. The
// names are state.State's (a test in package state holds them together).
type Supervised struct {
	Supervisor          int    `json:"supervisor,omitempty"`
	SupervisorStartTime uint64 `json:"supervisor_start_time,omitempty"`
	BootID              string `json:"boot_id,omitempty"`
	Record              struct {
		GuestStopTimeoutMS int64 `json:"guest_stop_timeout_ms,omitempty"`
	} `json:"record"`
}

// ReadSupervised reads a state file's Supervised part.
func ReadSupervised(path string) (Supervised, error) {
	var s Supervised
	data, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// StoppedFor is how long a supervisor must have been seen stopped before
// a stop gives up waiting for it.
const StoppedFor = 3 * time.Second

// Await waits up to d for the supervisor to exit. It gives up sooner,
// reporting stopped, when the supervisor stays stopped (SIGSTOP, a
// debugger) for StoppedFor: it would never get to the guest.
func Await(sup *proc.Process, d time.Duration) (exited, stopped bool) {
	deadline := time.Now().Add(d)
	var stoppedSince time.Time
	for {
		step := min(time.Until(deadline), time.Second)
		if sup.WaitExit(max(step, 0)) {
			return true, false
		}
		switch {
		case !sup.Stopped():
			stoppedSince = time.Time{}
		case stoppedSince.IsZero():
			stoppedSince = time.Now()
		case time.Since(stoppedSince) >= StoppedFor:
			return false, true
		}
		if !time.Now().Before(deadline) {
			return false, false
		}
	}
}

// StoppedError is a stop's error for a supervisor that stays stopped.
func StoppedError(name string, pid int) error {
	return fmt.Errorf("subhost %q: supervisor pid %d is stopped (SIGSTOP, or a debugger): continue it (kill -CONT %d) and it stops the guest, or use --force", name, pid, pid)
}

// NotFinishedError is a stop's error for a supervisor that did not end in
// wait.
func NotFinishedError(name string, pid int, wait time.Duration) error {
	return fmt.Errorf("subhost %q: supervisor pid %d did not finish stopping in %s; use --force", name, pid, wait)
}
