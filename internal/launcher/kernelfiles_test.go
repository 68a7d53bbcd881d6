package launcher

import (
	"os"
	"strings"
	"testing"
)

// TestIPCSysctlsAreThisKernels: every System V IPC entry of this
// kernel's /proc/sys/kernel is in the list (a kernel that added one
// would leave it read-only: the list wants it), and every listed one
// that this kernel has is a System V IPC limit.
func TestIPCSysctlsAreThisKernels(t *testing.T) {
	entries, err := os.ReadDir("/proc/sys/kernel")
	if err != nil {
		t.Skipf("no /proc/sys/kernel: %v", err)
	}
	listed := map[string]bool{}
	for _, p := range ipcSysctls() {
		listed[strings.TrimPrefix(p, "/proc/sys/kernel/")] = true
	}
	for _, e := range entries {
		n := e.Name()
		ipc := strings.HasPrefix(n, "shm") || strings.HasPrefix(n, "msg") || strings.HasPrefix(n, "sem")
		if n == "auto_msgmni" {
			ipc = false // a host-wide switch of old kernels, not the namespace's
		}
		if ipc && !listed[n] {
			t.Errorf("/proc/sys/kernel/%s is a System V IPC limit this kernel has and the list lacks", n)
		}
	}
	for name := range listed {
		if !strings.HasPrefix(name, "shm") && !strings.HasPrefix(name, "msg") && !strings.HasPrefix(name, "sem") {
			t.Errorf("%s listed as an IPC sysctl", name)
		}
	}
}

// TestKernelFileLists: every entry is an absolute path under /proc or
// /sys with a reason, and none is both masked and read-only.
func TestKernelFileLists(t *testing.T) {
	seen := map[string]bool{}
	for _, list := range [][]struct{ path, why string }{readOnlyKernelFiles, maskedKernelFiles} {
		for _, f := range list {
			if !strings.HasPrefix(f.path, "/proc/") && !strings.HasPrefix(f.path, "/sys/") || f.why == "" {
				t.Errorf("%+v: want a path under /proc or /sys and a reason", f)
			}
			if seen[f.path] {
				t.Errorf("%s listed twice", f.path)
			}
			seen[f.path] = true
		}
	}
}
