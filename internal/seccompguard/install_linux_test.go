package seccompguard

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk/stagetest"
)

const childEnv = "SECCOMPGUARD_TEST_CHILD"

// TestMain lets the test binary play the guarded process: the guard
// cannot be removed once installed, so it is installed in a child.
func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		if err := guardedChild(dir); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// guardedChild runs in its own mount namespace: with a scratch tmpfs at
// dir, it installs the guard and reports what each call returns.
func guardedChild(dir string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		return err
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(sub, sub, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	if err := Install(); err != nil {
		return err
	}
	res := func(err error) string {
		if err == nil {
			return "ok"
		}
		return unix.ErrnoName(err.(syscall.Errno))
	}
	fmt.Println("remount-ro", res(unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")))
	_, err := unix.Fspick(unix.AT_FDCWD, dir, 0)
	fmt.Println("fspick", res(err))
	fmt.Println("bind-remount-ro", res(unix.Mount("", sub, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")))
	fmt.Println("write-top", res(os.WriteFile(filepath.Join(dir, "f"), nil, 0o644)))
	err = os.WriteFile(filepath.Join(sub, "f"), nil, 0o644)
	if errors.Is(err, unix.EROFS) {
		err = unix.EROFS
	}
	fmt.Println("write-sub", res(err))
	return nil
}

func TestInstall(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("guarded child: %v\n%s", err, out)
	}
	want := "remount-ro EPERM\nfspick EPERM\nbind-remount-ro ok\nwrite-top ok\nwrite-sub EROFS\n"
	if got := string(out); !strings.HasPrefix(got, want) {
		t.Errorf("guarded child said:\n%s\nwant:\n%s", got, want)
	}
}
