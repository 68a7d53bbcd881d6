package guestexit

import (
	"fmt"
	"syscall"
)

// Exit statuses subhost-init uses when reboot(2) is not allowed.
const (
	ExitPowerOff = 0
	ExitReboot   = 100
)

// Outcome is what the end of a guest's PID 1 means.
type Outcome int

const (
	// Crashed: PID 1 died of anything but an orderly shutdown.
	Crashed Outcome = iota
	// PowerOff: the guest powered off or halted (also the end of a
	// shell-mode session).
	PowerOff
	// Reboot: the guest asked to be started again.
	Reboot
)

func (o Outcome) String() string {
	switch o {
	case PowerOff:
		return "power off"
	case Reboot:
		return "reboot"
	default:
		return "crashed"
	}
}

// Classify reads the final wait status of a guest's PID 1. A status that
// is not final (stopped, continued) counts as Crashed: callers pass what
// wait4 returned for a process that has ended.
func Classify(ws syscall.WaitStatus) Outcome {
	switch {
	case ws.Exited() && ws.ExitStatus() == ExitPowerOff:
		return PowerOff
	case ws.Exited() && ws.ExitStatus() == ExitReboot:
		return Reboot
	// reboot(2) in a PID namespace: LINUX_REBOOT_CMD_POWER_OFF and
	// _HALT kill PID 1 with SIGINT, _RESTART with SIGHUP
	// (kernel/pid_namespace.c, reboot_pid_ns).
	case ws.Signaled() && ws.Signal() == syscall.SIGINT:
		return PowerOff
	case ws.Signaled() && ws.Signal() == syscall.SIGHUP:
		return Reboot
	default:
		return Crashed
	}
}

// Describe says in a few words how PID 1 ended, for logs:
// "power off (killed by SIGINT)", "crashed (exit status 2)".
func Describe(ws syscall.WaitStatus) string {
	var how string
	switch {
	case ws.Exited():
		how = fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		how = "killed by " + signalName(ws.Signal())
		if ws.CoreDump() {
			how += ", core dumped"
		}
	case ws.Stopped():
		how = "stopped by " + signalName(ws.StopSignal())
	default:
		how = fmt.Sprintf("wait status %#x", uint32(ws))
	}
	return fmt.Sprintf("%s (%s)", Classify(ws), how)
}

func signalName(s syscall.Signal) string {
	names := map[syscall.Signal]string{
		syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT",
		syscall.SIGABRT: "SIGABRT", syscall.SIGKILL: "SIGKILL", syscall.SIGSEGV: "SIGSEGV",
		syscall.SIGTERM: "SIGTERM", syscall.SIGBUS: "SIGBUS", syscall.SIGSTOP: "SIGSTOP",
	}
	if n, ok := names[s]; ok {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}
