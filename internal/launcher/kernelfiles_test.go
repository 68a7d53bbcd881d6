package launcher

import (
	"strings"
	"testing"
)

func TestIsIPCSysctl(t *testing.T) {
	for name, want := range map[string]bool{
		"shmmax": true, "shm_rmid_forced": true, "shm_next_id": true, "msgmnb": true, "msg_next_id": true,
		"sem": true, "sem_next_id": true,
		"core_pattern": false, "hostname": false, "pid_max": false, "modprobe": false, "sysrq": false,
		"auto_msgmni": false, "ns_last_pid": false,
	} {
		if got := isIPCSysctl(name); got != want {
			t.Errorf("isIPCSysctl(%q) = %v, want %v", name, got, want)
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
