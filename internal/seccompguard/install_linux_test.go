package seccompguard

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk/stagetest"
)

const childEnv = "SECCOMPGUARD_TEST_CHILD"

// TestMain lets the test binary play the guarded process: the guard
// cannot be removed once installed, so it is installed in a child.
func TestMain(m *testing.M) {
	if arg := os.Getenv(childEnv); arg != "" {
		mode, dir, _ := strings.Cut(arg, ":")
		var err error
		switch mode {
		case "filter":
			err = guardedChild(dir, true)
		case "control":
			err = guardedChild(dir, false)
		case "caps":
			err = capsChild()
		case "caps-report":
			err = capsReport()
		default:
			err = fmt.Errorf("unknown child mode %q", mode)
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func res(err error) string {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

func errnoRes(_, _ uintptr, errno syscall.Errno) string {
	if errno == 0 {
		return "ok"
	}
	return unix.ErrnoName(errno)
}

// guardedChild runs in its own mount namespace: with a scratch tmpfs at
// dir, it installs the guard (the filter alone: it keeps every
// capability, so that each refusal is the filter's) and reports what
// each call returns. Without install, it is the control: what the same
// calls return unguarded.
func guardedChild(dir string, install bool) error {
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
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("not a module"), 0o644); err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	// A real handle, taken before the guard: open_by_handle_at would
	// succeed with it.
	handle, _, err := unix.NameToHandleAt(unix.AT_FDCWD, file, 0)
	if err != nil {
		return fmt.Errorf("name_to_handle_at: %w", err)
	}
	native := abis[runtime.GOARCH][0]

	if install {
		if err := Install(HostOptions()); err != nil {
			return err
		}
	}
	say := func(name, result string) { fmt.Println(name, result) }

	// Without the guard, a tmpfs file answers these with ENOTTY and
	// FIFREEZE with EOPNOTSUPP: nothing here can harm the host.
	ioctl := func(fd *os.File, req uint) string {
		return errnoRes(unix.Syscall(unix.SYS_IOCTL, fd.Fd(), uintptr(req), 0))
	}
	say("LOOP_CLR_FD", ioctl(f, unix.LOOP_CLR_FD))
	say("LOOP_GET_STATUS64", ioctl(f, unix.LOOP_GET_STATUS64))
	say("LOOP_CTL_GET_FREE", ioctl(f, unix.LOOP_CTL_GET_FREE))
	say("FIFREEZE", ioctl(d, 0xc0045877))
	say("FITHAW", ioctl(d, 0xc0045878))
	say("FS_IOC_SHUTDOWN", ioctl(d, 0x8004587d))
	say("TCGETS", ioctl(f, unix.TCGETS))

	dev := unix.Mkdev(7, 255) // a loop device number, whatever it is
	say("mknodat-block", res(unix.Mknodat(unix.AT_FDCWD, filepath.Join(dir, "blk"), unix.S_IFBLK|0o600, int(dev))))
	if nr := native.nr[callMknod]; len(nr) > 0 {
		p, _ := unix.BytePtrFromString(filepath.Join(dir, "blk2"))
		say("mknod-block", errnoRes(unix.Syscall(uintptr(nr[0]), uintptr(unsafe.Pointer(p)), unix.S_IFBLK|0o600, uintptr(dev))))
	} else {
		say("mknod-block", "EPERM") // no mknod(2) here
	}
	say("mknodat-char", res(unix.Mknodat(unix.AT_FDCWD, filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))))
	say("mknodat-fifo", res(unix.Mknodat(unix.AT_FDCWD, filepath.Join(dir, "fifo"), unix.S_IFIFO|0o644, 0)))

	fd, err := unix.OpenByHandleAt(int(d.Fd()), handle, unix.O_RDONLY)
	if err == nil {
		unix.Close(fd)
	}
	say("open_by_handle_at", res(err))
	say("init_module", res(unix.InitModule([]byte("garbage, not an ELF module"), "")))
	say("finit_module", res(unix.FinitModule(int(f.Fd()), "", 0)))
	say("delete_module", res(unix.DeleteModule("subhost_no_such_module", unix.O_NONBLOCK)))
	// Flags no kernel knows: without the guard these fail with EINVAL.
	say("kexec_load", errnoRes(unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0xdead0000, 0, 0)))
	if nr := native.nr[callKexecFileLoad]; len(nr) > 0 {
		say("kexec_file_load", errnoRes(unix.Syscall6(uintptr(nr[0]), ^uintptr(0), ^uintptr(0), 0, 0, 0xdead0000, 0)))
	} else {
		say("kexec_file_load", "EPERM") // no kexec_file_load(2) here
	}
	p, _ := unix.BytePtrFromString(filepath.Join(dir, "no-such-swap"))
	say("swapon", errnoRes(unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(p)), 0, 0)))
	say("swapoff", errnoRes(unix.Syscall(unix.SYS_SWAPOFF, uintptr(unsafe.Pointer(p)), 0, 0)))
	// Wrong magic numbers: refused before anything happens, by the
	// kernel, not by the guard.
	say("reboot", errnoRes(unix.Syscall6(unix.SYS_REBOOT, 1, 2, unix.LINUX_REBOOT_CMD_CAD_OFF, 0, 0, 0)))

	// Invalid arguments everywhere: unguarded, the kernel refuses each
	// before doing anything (an unknown bpf command, a NULL perf
	// attribute or key type, an unknown keyctl operation, fanotify and
	// userfaultfd flags no kernel knows).
	say("bpf", errnoRes(unix.Syscall(unix.SYS_BPF, 0xdead, 0, 0)))
	say("perf_event_open", errnoRes(unix.Syscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0)))
	say("keyctl", errnoRes(unix.Syscall6(unix.SYS_KEYCTL, 0xdead, 0, 0, 0, 0, 0)))
	say("add_key", errnoRes(unix.Syscall6(unix.SYS_ADD_KEY, 0, 0, 0, 0, 0, 0)))
	say("request_key", errnoRes(unix.Syscall6(unix.SYS_REQUEST_KEY, 0, 0, 0, 0, 0, 0)))
	say("fanotify_init", errnoRes(unix.Syscall(unix.SYS_FANOTIFY_INIT, 0xdead0000, 0, 0)))
	say("userfaultfd", errnoRes(unix.Syscall(unix.SYS_USERFAULTFD, 0xdead0000, 0, 0)))

	// Two tmpfs mounts of the scratch one: a forced unmount refused, a
	// plain one not.
	for _, m := range []string{"forced", "plain"} {
		p := filepath.Join(dir, m)
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", p, "tmpfs", 0, "size=1m"); err != nil {
			return err
		}
	}
	say("umount-force", res(unix.Unmount(filepath.Join(dir, "forced"), unix.MNT_FORCE)))
	say("umount", res(unix.Unmount(filepath.Join(dir, "plain"), 0)))

	// Last: unguarded, the remount makes the scratch tmpfs read-only.
	say("remount-ro", res(unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")))
	_, err = unix.Fspick(unix.AT_FDCWD, dir, 0)
	say("fspick", res(err))
	say("bind-remount-ro", res(unix.Mount("", sub, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")))
	say("write-top", res(os.WriteFile(filepath.Join(dir, "f"), nil, 0o644)))
	err = os.WriteFile(filepath.Join(sub, "f"), nil, 0o644)
	if errors.Is(err, unix.EROFS) {
		err = unix.EROFS
	}
	say("write-sub", res(err))
	return nil
}

// child runs the test binary as a child in mode, in a new mount
// namespace, and returns what it printed.
func child(t *testing.T, mode string) string {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %s: %v\n%s", mode, err, out)
	}
	return string(out)
}

func TestInstall(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	out := child(t, "filter:"+t.TempDir())
	want := map[string]string{
		"remount-ro": "EPERM", "fspick": "EPERM", "bind-remount-ro": "ok", "write-top": "ok", "write-sub": "EROFS",
		"LOOP_CLR_FD": "EPERM", "LOOP_GET_STATUS64": "EPERM", "LOOP_CTL_GET_FREE": "EPERM",
		"FIFREEZE": "EPERM", "FITHAW": "EPERM", "FS_IOC_SHUTDOWN": "EPERM", "TCGETS": "ENOTTY",
		"mknodat-block": "EPERM", "mknod-block": "EPERM", "mknodat-char": "ok", "mknodat-fifo": "ok",
		"open_by_handle_at": "EPERM", "init_module": "EPERM", "finit_module": "EPERM", "delete_module": "EPERM",
		"kexec_load": "EPERM", "kexec_file_load": "EPERM", "swapon": "EPERM", "swapoff": "EPERM",
		"reboot": "EINVAL",
		"bpf":    "EPERM", "perf_event_open": "EPERM", "keyctl": "EPERM", "add_key": "EPERM", "request_key": "EPERM",
		"fanotify_init": "EPERM", "userfaultfd": "EPERM",
		"umount-force": "EPERM", "umount": "ok",
	}
	if HostOptions().AllowUserfaultfd {
		want["userfaultfd"] = "EINVAL"
	}
	checkReport(t, out, want)
}

// TestInstallControl runs the same calls unguarded, to show that each
// EPERM in TestInstall is the guard's: the kernel itself answers them
// otherwise (on a scratch tmpfs, harmlessly).
func TestInstallControl(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	out := child(t, "control:"+t.TempDir())
	want := map[string]string{
		"remount-ro": "ok", "fspick": "ok",
		"LOOP_CLR_FD": "ENOTTY", "LOOP_GET_STATUS64": "ENOTTY", "LOOP_CTL_GET_FREE": "ENOTTY",
		"FIFREEZE": "ENOTSUP", "FS_IOC_SHUTDOWN": "ENOTTY",
		"mknodat-block": "ok", "open_by_handle_at": "ok",
		"swapon": "ENOENT", "swapoff": "ENOENT",
		"bpf": "EINVAL", "perf_event_open": "EFAULT", "keyctl": "ENOTSUP", "add_key": "EFAULT",
		"request_key": "EFAULT", "fanotify_init": "EINVAL", "userfaultfd": "EINVAL",
		"umount-force": "ok", "umount": "ok",
	}
	if len(abis[runtime.GOARCH][0].nr[callMknod]) > 0 {
		want["mknod-block"] = "ok"
	}
	checkReport(t, out, want)
	// Module loading and kexec may be missing (ENOSYS) or refused by the
	// host's own policy (lockdown, module signing, kexec_load_disabled):
	// only shown.
	for _, k := range []string{"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load"} {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, k+" ") {
				t.Logf("unguarded %s", l)
			}
		}
	}
}

// checkReport compares a child's "name result" lines with want.
func checkReport(t *testing.T, out string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok {
			got[k] = v
		}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %s", k, got[k], w)
		}
	}
	if t.Failed() {
		t.Logf("the child said:\n%s", out)
	}
}
