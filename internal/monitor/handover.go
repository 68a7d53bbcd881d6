// Package monitor is subhost-monitor, the small process that watches a
// running guest in place of the full supervisor (package supervisor).
//
// The supervisor holds gRPC, protobuf, HCL and cobra, more memory than a
// whole LXC monitor, and needs none of it while the guest merely runs.
// So once the guest's PID 1 runs, the supervisor executes subhost-monitor
// in its own process: same PID (the guest stays its child, and `status`
// keeps naming it), the console's pty and socket passed as descriptors.
// The monitor relays the console and waits. Whatever needs the pipeline
// (the guest ended: reboot, restart, teardown; a stop; a power-off asked on
// the console) makes it execute the full supervisor again, which picks up
// where it handed over. Each direction carries a Handover in a memfd.
//
// The monitor never reaps the guest (it waits with WNOWAIT), so the
// supervisor it hands back to sees the guest's end exactly as if it had
// waited itself.
package monitor

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/console"
)

// Reason says why the monitor hands back to the supervisor.
type Reason string

const (
	// GuestEnded: the guest's PID 1 exited (it is left for the supervisor
	// to reap).
	GuestEnded Reason = "guest-ended"
	// StopAsked: SIGTERM or SIGINT (`subhost stop`, a service manager).
	StopAsked Reason = "stop"
	// PowerOffAsked: a console client's power-off request (Ctrl-] q).
	PowerOffAsked Reason = "poweroff"
	// Failed: the monitor could not do its job (its error is in the log).
	Failed Reason = "failed"
)

// Handover is what the supervisor and the monitor pass each other across
// an exec.
type Handover struct {
	Name string `json:"name"`
	// Spec is the supervisor's own spec, opaque to the monitor.
	Spec       json.RawMessage `json:"spec"`
	GuestPID   int             `json:"guest_pid"`
	GuestStart uint64          `json:"guest_start"`
	// Console is the guest's console (no console: Master is -1).
	Console console.Handover `json:"console"`
	// StopFile is where `subhost stop` leaves its request before SIGTERM.
	StopFile string `json:"stop_file"`
	// Supervisor is the command line that executes the full supervisor
	// (the handover's descriptor is added to it).
	Supervisor []string `json:"supervisor"`
	// Reason is set by the monitor when it hands back.
	Reason Reason `json:"reason,omitempty"`
}

// FDFlag, with the memfd's number (FDFlag=N), is the last argument of
// both commands.
const FDFlag = "--handover-fd"

// Exec executes argv with h: h goes into a memfd whose number is added as
// FDFlag=N; the descriptors in keep lose close-on-exec. It returns only
// on failure.
func Exec(argv []string, h Handover, keep ...int) error {
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	fd, err := unix.MemfdCreate("subhost-handover", 0) // inherited: no MFD_CLOEXEC
	if err != nil {
		return fmt.Errorf("hand over: memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "handover")
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("hand over: %w", err)
	}
	for _, k := range keep {
		if k < 0 {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(k), unix.F_SETFD, 0); err != nil {
			f.Close()
			return fmt.Errorf("hand over: descriptor %d: %w", k, err)
		}
	}
	args := append(append([]string{}, argv...), FDFlag+"="+strconv.Itoa(fd))
	err = unix.Exec(argv[0], args, os.Environ())
	f.Close()
	return fmt.Errorf("execute %s: %w", argv[0], err)
}

// ParseFD finds FDFlag=N in args: N, and args without it (-1 when absent).
func ParseFD(args []string) (int, []string) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, FDFlag+"="); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return -1, args
			}
			return n, append(args[:i:i], args[i+1:]...)
		}
	}
	return -1, args
}

// Read reads the handover in the memfd fd and closes it.
func Read(fd int) (Handover, error) {
	var h Handover
	f := os.NewFile(uintptr(fd), "handover")
	if f == nil {
		return h, fmt.Errorf("read hand-over: bad descriptor %d", fd)
	}
	defer f.Close()
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<24))
	if err != nil {
		return h, fmt.Errorf("read hand-over: %w", err)
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("read hand-over: %w", err)
	}
	return h, nil
}
