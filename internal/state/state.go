package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/subhost/subhost/internal/atomicfile"
	"github.com/subhost/subhost/internal/stopreq"
	"github.com/subhost/subhost/sdk"
)

// Schema is the version of state.json's layout. A runner refuses a file
// with a newer schema rather than misread it.
const Schema = 1

// DefaultRoot is where state lives; tmpfs, so a host reboot forgets every
// subhost, as it forgets its mounts and namespaces.
const DefaultRoot = "/run/subhost"

// Subhost statuses.
const (
	Booting     = "booting"
	Running     = "running"
	Hibernating = "hibernating"
	Stopping    = "stopping"
	Stopped     = "stopped"
	Failed      = "failed"
)

// Stage statuses.
const (
	StageNotStarted = "not started"
	StagePending    = "pending" // Up was called and has not returned
	StageUp         = "up"
	StageFailed     = "failed" // Up failed; Down is still owed
	StageDown       = "down"
	StageSkipped    = "skipped" // its pipeline's when= said it does not run
)

// State is the content of /run/subhost/NAME/state.json.
type State struct {
	Schema   int    `json:"schema"`
	Name     string `json:"name"`
	Pipeline string `json:"pipeline"`
	Home     string `json:"home"`
	OnExit   string `json:"on_exit,omitempty"`
	Status   string `json:"status"`
	// Subhost is the config as read when the subhost was brought up, so
	// that Down sees what Up saw even if the file changed since.
	Subhost sdk.Subhost `json:"subhost"`
	// Record is the merged boot record of every stage that is up.
	Record sdk.BootRecord `json:"record"`
	// Console is the host path of the guest console's pty, which the
	// runner hands every stage in its request.
	Console string  `json:"console,omitempty"`
	Stages  []Stage `json:"stages"`
	// Supervisor is the PID and start time of the process supervising the
	// guest, 0 when none.
	Supervisor          int       `json:"supervisor,omitempty"`
	SupervisorStartTime uint64    `json:"supervisor_start_time,omitempty"`
	Started             time.Time `json:"started"`
	GuestStarted        time.Time `json:"guest_started,omitzero"`
	Updated             time.Time `json:"updated"`
	// BootID is the host kernel's boot ID at the last save. A state from
	// an earlier boot of the host (where /run is not a tmpfs, or a copy
	// put back) describes nothing that exists any more; Load says so.
	BootID string `json:"boot_id,omitempty"`
	// FromEarlierBoot is set by Load on a state saved before the host's
	// last reboot: its processes are forgotten (their PIDs and start
	// times name whatever this boot gave those numbers to) and nothing
	// it records runs or is mounted. Not saved.
	FromEarlierBoot bool   `json:"-"`
	Error           string `json:"error,omitempty"`
	// Restarts counts the guest's restarts by the config's RESTART=
	// policy (not the guest's own reboots).
	Restarts int `json:"restarts,omitempty"`
	// RecentRestarts are those restarts within the limit's window
	// (runner.RestartWindow). They are kept here, not in the supervisor's
	// memory: a supervisor that became subhost-monitor is executed
	// afresh to restart the guest.
	RecentRestarts []time.Time `json:"recent_restarts,omitempty"`
}

// Stage is one stage's part of the state.
type Stage struct {
	Name   string            `json:"name"`
	Plugin string            `json:"plugin"`
	Path   string            `json:"path,omitempty"`
	Params map[string]string `json:"params,omitempty"`
	Status string            `json:"status"`
	// Result is what this stage contributed to the boot record.
	Result sdk.BootRecord `json:"result"`
	// State is the stage's own opaque state from its last Up.
	State      []byte `json:"state,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`
}

// Launcher returns the index of the stage whose Up launched the guest
// that is recorded, or -1.
func (s *State) Launcher() int {
	for i := len(s.Stages) - 1; i >= 0; i-- {
		if s.Stages[i].Result.GuestPID != 0 {
			return i
		}
	}
	return -1
}

// ForgetGuest clears the recorded guest PID 1 from the boot record and
// from the result of the stage that launched it: the one place where a
// guest that is gone, or about to be replaced, is forgotten.
func (s *State) ForgetGuest() {
	s.Record.GuestPID, s.Record.GuestStartTime = 0, 0
	for i := range s.Stages {
		s.Stages[i].Result.GuestPID, s.Stages[i].Result.GuestStartTime = 0, 0
	}
}

// Owed reports whether the stage may have left objects behind, so Down
// must run for it.
func (s Stage) Owed() bool {
	return s.Status == StagePending || s.Status == StageUp || s.Status == StageFailed
}

// Dir is one subhost's state directory.
type Dir struct {
	Root string // usually DefaultRoot
	Name string
}

func (d Dir) path() string      { return filepath.Join(d.Root, d.Name) }
func (d Dir) statePath() string { return filepath.Join(d.path(), "state.json") }

// ErrNoState is returned by Load when the subhost has no state: it is
// stopped.
var ErrNoState = errors.New("no state")

// Load reads the state; ErrNoState when there is none.
func (d Dir) Load() (*State, error) {
	data, err := os.ReadFile(d.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoState
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", d.statePath(), err)
	}
	if s.Console == "" {
		// Written before the console moved out of the boot record.
		var legacy struct {
			Record struct {
				Console string `json:"console"`
			} `json:"record"`
		}
		if json.Unmarshal(data, &legacy) == nil {
			s.Console = legacy.Record.Console
		}
	}
	if s.Schema > Schema {
		return nil, fmt.Errorf("%s: schema %d is newer than this subhost understands (%d)", d.statePath(), s.Schema, Schema)
	}
	if fromEarlierBoot(s.BootID) {
		s.FromEarlierBoot = true
		s.Supervisor, s.SupervisorStartTime = 0, 0
		s.ForgetGuest()
	}
	return &s, nil
}

// Save writes the state atomically: a temporary file in the same
// directory renamed over the state. A reader sees the old or the new
// content, never a mix, whatever instant the writer dies. It is not
// synced to disk: the state describes mounts, loop devices, namespaces
// and processes that do not outlive the host's kernel, so after a crash
// of the host the old and the new content are equally stale (and on
// hosts whose /run is not a tmpfs, the boot's dozen saves would each
// wait for two disk flushes). It is compact JSON on one line (`jq .`
// shows it indented): a boot saves it half a dozen times, and indenting
// took most of a marshalling's time.
func (d Dir) Save(s *State) error {
	s.Schema = Schema
	s.Updated = time.Now().UTC()
	s.BootID = bootID()
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.path(), 0o700); err != nil {
		return err
	}
	return atomicfile.Replace(d.statePath(), append(data, '\n'), 0o600)
}

// Remove deletes the state file: the subhost is stopped.
func (d Dir) Remove() error {
	err := os.Remove(d.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Others reads the state of every subhost under root but self that is not
// stopped, as the neighbours a stage is told about. Unreadable states are
// skipped: they are reported by the operations on their own subhosts.
func Others(root, self string) []sdk.Neighbour {
	names, _ := List(root)
	var out []sdk.Neighbour
	for _, n := range names {
		if n == self {
			continue
		}
		nb, ok := Dir{Root: root, Name: n}.neighbour()
		if !ok || nb.Status == Stopped {
			continue
		}
		out = append(out, nb)
	}
	return out
}

// neighbour reads from the subhost's state only what another subhost's
// stages are told of it. Every boot and stop reads every other
// subhost's state: decoding only these fields, rather than Load's whole
// state, is half the time on a host with a hundred of them.
func (d Dir) neighbour() (sdk.Neighbour, bool) {
	data, err := os.ReadFile(d.statePath())
	if err != nil {
		return sdk.Neighbour{}, false
	}
	var s struct {
		Schema int    `json:"schema"`
		Status string `json:"status"`
		BootID string `json:"boot_id"`
		Record struct {
			Interfaces []sdk.Interface `json:"interfaces"`
		} `json:"record"`
	}
	if json.Unmarshal(data, &s) != nil || s.Schema > Schema || fromEarlierBoot(s.BootID) {
		return sdk.Neighbour{}, false
	}
	return sdk.Neighbour{Name: d.Name, Status: s.Status, Interfaces: s.Record.Interfaces}, true
}

// List names every subhost that has state, sorted.
func List(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() || e.Name()[0] == '.' {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, e.Name(), "state.json")); err == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// StopRequest is what `subhost stop` asks of a supervisor before it sends
// SIGTERM: how long the guest gets, and whether to kill it at once.
type StopRequest = stopreq.Request

// StopRequestPath is where `subhost stop` leaves its request.
func (d Dir) StopRequestPath() string { return filepath.Join(d.path(), stopreq.File) }

// WriteStopRequest leaves a stop request for the supervisor.
func (d Dir) WriteStopRequest(r StopRequest) error { return stopreq.Write(d.path(), r) }

// TakeStopRequest reads and removes a stop request; ok is false when
// there is none (a plain SIGTERM from a service manager).
func (d Dir) TakeStopRequest() (r StopRequest, ok bool) { return stopreq.Take(d.path()) }
