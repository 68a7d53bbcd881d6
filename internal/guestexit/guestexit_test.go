package guestexit

import (
	"syscall"
	"testing"
)

// Wait statuses as the kernel encodes them: exit status in bits 8-15,
// terminating signal in bits 0-6, 0x80 for a core dump, 0x7f for stopped.
func exited(code int) syscall.WaitStatus            { return syscall.WaitStatus(code << 8) }
func killed(sig syscall.Signal) syscall.WaitStatus  { return syscall.WaitStatus(sig) }
func stopped(sig syscall.Signal) syscall.WaitStatus { return syscall.WaitStatus(int(sig)<<8 | 0x7f) }
func cored(sig syscall.Signal) syscall.WaitStatus   { return syscall.WaitStatus(sig) | 0x80 }

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		ws   syscall.WaitStatus
		want Outcome
		desc string
	}{
		{exited(0), PowerOff, "power off (exit status 0)"},
		{exited(100), Reboot, "reboot (exit status 100)"},
		{killed(syscall.SIGINT), PowerOff, "power off (killed by SIGINT)"},
		{killed(syscall.SIGHUP), Reboot, "reboot (killed by SIGHUP)"},
		{exited(1), Crashed, "crashed (exit status 1)"},
		{exited(2), Crashed, "crashed (exit status 2)"},
		{exited(101), Crashed, "crashed (exit status 101)"},
		{killed(syscall.SIGKILL), Crashed, "crashed (killed by SIGKILL)"},
		{killed(syscall.SIGTERM), Crashed, "crashed (killed by SIGTERM)"},
		{cored(syscall.SIGSEGV), Crashed, "crashed (killed by SIGSEGV, core dumped)"},
		{killed(37), Crashed, "crashed (killed by signal 37)"},
		{stopped(syscall.SIGSTOP), Crashed, "crashed (stopped by SIGSTOP)"},
	} {
		if got := Classify(tc.ws); got != tc.want {
			t.Errorf("Classify(%#x) = %v, want %v", uint32(tc.ws), got, tc.want)
		}
		if got := Describe(tc.ws); got != tc.desc {
			t.Errorf("Describe(%#x) = %q, want %q", uint32(tc.ws), got, tc.desc)
		}
	}
}
