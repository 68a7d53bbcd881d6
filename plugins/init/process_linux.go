package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

func major(rdev uint64) uint32 { return unix.Major(rdev) }
func minor(rdev uint64) uint32 { return unix.Minor(rdev) }

// procStat reads a process's start time (clock ticks since boot, field 22
// of /proc/PID/stat) and state letter (field 3).
func procStat(pid int) (uint64, byte, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// from the last ')'.
	s := string(data)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	return start, f[0][0], err
}

// alive reports whether pid is still the process that started at start
// and has not exited (a zombie has).
func alive(pid int, start uint64) bool {
	got, state, err := procStat(pid)
	return err == nil && got == start && state != 'Z' && state != 'X'
}

// stopGuest powers the guest off: SIGPWR to its PID 1, up to timeout for
// it to exit, then SIGKILL, which ends every process of its PID namespace.
// It signals only through a pidfd opened on pid and then found to have
// the recorded start time, so a reused PID is never signalled. A guest
// that is already gone is success.
func stopGuest(ctx context.Context, pid int, start uint64, timeout time.Duration, log hclog.Logger) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(fd)
	// The pidfd pins the process; check it is the recorded one.
	if !alive(pid, start) {
		log.Debug("recorded guest is gone", "pid", pid)
		return nil
	}
	// Leave room in the caller's deadline for the kill.
	wait := timeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) - 2*time.Second; left < wait {
			wait = max(left, 0)
		}
	}
	// SIGPWR is repeated, soon then every second: the kernel drops a
	// signal sent from the host to a PID namespace's init before that
	// init has set its handlers (a guest stopped just after it started),
	// and a shutdown already under way ignores another request.
	deadline := time.Now().Add(wait)
	for every := 50 * time.Millisecond; ; every = min(2*every, time.Second) {
		if err := unix.PidfdSendSignal(fd, unix.SIGPWR, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("send SIGPWR: %w", err)
		}
		exited, err := waitPidfd(fd, min(every, time.Until(deadline)))
		if err != nil || exited {
			return err
		}
		if !time.Now().Before(deadline) {
			break
		}
	}
	log.Warn("guest did not power off in time; killing it", "pid", pid, "timeout", timeout)
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("send SIGKILL: %w", err)
	}
	exited, err := waitPidfd(fd, 10*time.Second)
	if err == nil && !exited {
		err = errors.New("still running 10s after SIGKILL")
	}
	return err
}

// waitPidfd waits until the process has exited (a pidfd is readable once
// it has, zombie or reaped) or d has passed.
func waitPidfd(fd int, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		ms := int(time.Until(deadline).Milliseconds())
		if ms < 0 {
			ms = 0
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll pidfd: %w", err)
		}
		if n > 0 {
			return true, nil
		}
		if ms == 0 {
			return false, nil
		}
	}
}
