package sdk

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestExecutableKeptFromChildren: a plugin gets its own executable as
// descriptor 3 and marks it close-on-exec; another file there stays as
// it is.
func TestExecutableKeptFromChildren(t *testing.T) {
	if os.Getenv("SDK_TEST_FD3") != "" {
		keepExecutableFromChildren()
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, 3, syscall.F_GETFD, 0)
		if errno != 0 {
			os.Exit(3)
		}
		if flags&syscall.FD_CLOEXEC != 0 {
			os.Exit(10) // close-on-exec
		}
		os.Exit(11) // inherited by children
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	other, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, tc := range []struct {
		fd3  *os.File
		want int
	}{{self, 10}, {other, 11}} {
		cmd := exec.Command("/proc/self/exe", "-test.run=^TestExecutableKeptFromChildren$")
		cmd.Env = append(os.Environ(), "SDK_TEST_FD3=1")
		cmd.ExtraFiles = []*os.File{tc.fd3}
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		if code != tc.want {
			t.Errorf("descriptor 3 %s: exit %d (%v), want %d", strings.TrimPrefix(tc.fd3.Name(), "/"), code, err, tc.want)
		}
	}
}
