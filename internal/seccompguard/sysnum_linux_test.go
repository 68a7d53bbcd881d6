package seccompguard

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNativeNumbers checks the build architecture's native numbers
// against golang.org/x/sys/unix (sysnum_linux_amd64_test.go adds the
// calls some architectures lack).
func TestNativeNumbers(t *testing.T) {
	list, ok := abis[runtime.GOARCH]
	if !ok {
		t.Skipf("no guard for %s", runtime.GOARCH)
	}
	native := list[0]
	for c, want := range map[call]uintptr{
		callMount:          unix.SYS_MOUNT,
		callFspick:         unix.SYS_FSPICK,
		callUmount2:        unix.SYS_UMOUNT2,
		callIoctl:          unix.SYS_IOCTL,
		callMknodat:        unix.SYS_MKNODAT,
		callOpenByHandleAt: unix.SYS_OPEN_BY_HANDLE_AT,
		callKexecLoad:      unix.SYS_KEXEC_LOAD,
		callInitModule:     unix.SYS_INIT_MODULE,
		callFinitModule:    unix.SYS_FINIT_MODULE,
		callDeleteModule:   unix.SYS_DELETE_MODULE,
		callSwapon:         unix.SYS_SWAPON,
		callSwapoff:        unix.SYS_SWAPOFF,
		callBPF:            unix.SYS_BPF,
		callPerfEventOpen:  unix.SYS_PERF_EVENT_OPEN,
		callKeyctl:         unix.SYS_KEYCTL,
		callAddKey:         unix.SYS_ADD_KEY,
		callRequestKey:     unix.SYS_REQUEST_KEY,
		callFanotifyInit:   unix.SYS_FANOTIFY_INIT,
		callUserfaultfd:    unix.SYS_USERFAULTFD,
	} {
		checkNumber(t, native, c, want)
	}
}

func checkNumber(t *testing.T, x abi, c call, want uintptr) {
	t.Helper()
	if len(x.nr[c]) == 0 || uintptr(x.nr[c][0]) != want {
		t.Errorf("%s: %s is %v, x/sys/unix says %d", x.name, c, x.nr[c], want)
	}
}
