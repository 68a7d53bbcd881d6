package guestexec

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// SocketName is subhost-init's abstract socket in the guest's network
// namespace.
const SocketName = "@subhost-init/enter"

// maxMessage bounds one message (a command line and its environment).
const maxMessage = 256 << 10

// Request asks PID 1 to run a command.
type Request struct {
	// Argv is the command; a name without a slash is looked up in the
	// PATH of Env, inside the guest.
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	// TTY: one descriptor comes with the request, a terminal, which
	// becomes the command's stdin, stdout, stderr and controlling
	// terminal in a session of its own; otherwise three: stdin, stdout,
	// stderr.
	TTY bool `json:"tty"`
}

// Files is how many descriptors come with r.
func (r Request) Files() int {
	if r.TTY {
		return 1
	}
	return 3
}

// check refuses a request PID 1 cannot run.
func (r Request) check() error {
	if len(r.Argv) == 0 || r.Argv[0] == "" {
		return fmt.Errorf("no command")
	}
	for _, e := range r.Env {
		if !strings.Contains(e, "=") {
			return fmt.Errorf("environment entry %q is not NAME=value", e)
		}
	}
	return nil
}

// clientMsg is a message from the client: the request (first), then
// signals.
type clientMsg struct {
	Request *Request `json:"request,omitempty"`
	Signal  int      `json:"signal,omitempty"`
}

// Event is a message from PID 1.
type Event struct {
	// Started: the command runs, as PID (in the guest's PID namespace).
	Started bool `json:"started,omitempty"`
	PID     int  `json:"pid,omitempty"`
	// Error: the command could not be started (or the request was
	// refused); nothing runs.
	Error string `json:"error,omitempty"`
	// Exited: the command ended with exit Status, or of Signal.
	Exited bool `json:"exited,omitempty"`
	Status int  `json:"status,omitempty"`
	Signal int  `json:"signal,omitempty"`
}

// ExitCode is the status a shell would report: the exit status, or 128
// plus the signal.
func (e Event) ExitCode() int {
	if e.Signal != 0 {
		return 128 + e.Signal
	}
	return e.Status
}

func marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err == nil && len(b) > maxMessage {
		err = fmt.Errorf("message of %d bytes is too long (at most %d)", len(b), maxMessage)
	}
	return b, err
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
