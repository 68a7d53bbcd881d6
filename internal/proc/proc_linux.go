package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrGone is returned when the process no longer exists (or its PID now
// belongs to another process).
var ErrGone = errors.New("process is gone")

// StartTime returns a process's start time in clock ticks since boot
// (field 22 of /proc/PID/stat).
func StartTime(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, ErrGone
	}
	// The command name (field 2) is in parentheses and may hold spaces or
	// parentheses itself: count fields from the last ')'.
	s := string(data)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(s[end+1:])
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// userHZ is the unit of the start times in /proc/PID/stat: USER_HZ, which
// Linux fixes at 100 for user space whatever the kernel's own tick rate.
const userHZ = 100

// Age is how long ago the process with this start time (StartTime's
// clock ticks since boot) started. The start times count from boot on
// CLOCK_BOOTTIME, so a suspended host does not make a process younger.
func Age(startTime uint64) time.Duration {
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &now); err != nil {
		return 0
	}
	started := time.Duration(startTime) * (time.Second / userHZ)
	return time.Duration(now.Nano()) - started
}

// Process is a pidfd on a process whose identity was checked.
type Process struct {
	PID int
	fd  int
}

// Open opens the process with that PID if it still is the one that
// started at startTime. The check is made after the pidfd is open, so the
// pidfd cannot refer to a process that reused the PID.
func Open(pid int, startTime uint64) (*Process, error) {
	if pid <= 0 {
		return nil, ErrGone
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, ErrGone
		}
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	st, err := StartTime(pid)
	if err != nil || st != startTime {
		unix.Close(fd)
		return nil, ErrGone
	}
	return &Process{PID: pid, fd: fd}, nil
}

// Alive reports whether a process with this identity is running (a
// zombie counts as gone).
func Alive(pid int, startTime uint64) bool {
	p, err := Open(pid, startTime)
	if err != nil {
		return false
	}
	defer p.Close()
	return !p.Exited()
}

// Signal sends sig through the pidfd.
func (p *Process) Signal(sig unix.Signal) error {
	err := unix.PidfdSendSignal(p.fd, sig, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return ErrGone
	}
	return err
}

// Exited reports, without waiting, whether the process has exited.
func (p *Process) Exited() bool {
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// WaitExit waits up to d for the process to exit; it does not reap it.
func (p *Process) WaitExit(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds()))
		if err == nil && n > 0 {
			return true
		}
		if errors.Is(err, unix.EINTR) && time.Now().Before(deadline) {
			continue
		}
		return false
	}
}

// Stopped reports whether the process is stopped (SIGSTOP, or a
// debugger's stop): it runs again only when someone continues it.
func (p *Process) Stopped() bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil || p.Exited() {
		return false // gone: its pidfd tells
	}
	s := string(data)
	end := strings.LastIndexByte(s, ')')
	if end < 0 || end+2 >= len(s) {
		return false
	}
	state := s[end+2] // field 3, after ") "
	return state == 'T' || state == 't'
}

// Close releases the pidfd.
func (p *Process) Close() error { return unix.Close(p.fd) }

// FD is the pidfd, valid until Close: for setns(2) into the process's
// namespaces.
func (p *Process) FD() int { return p.fd }
