// Command guardprobe stands in for subhost-init in the guard's tests: run
// as the guest's PID 1, it tries what the seccomp guard and the dropped
// capabilities must refuse, and what they must still allow, and writes
// each result to /guard.json. /dev/vdc is a read-only loop device the
// test attached; its first bytes are "guard marker".
//
// Every refused call is made so that, were it allowed, it would harm
// only the test's own objects: the loop device, the scratch tmpfs root.
package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

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

func ioctl(fd int, req uint, arg uintptr) string {
	return errnoRes(unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), arg))
}

// mknodNr is mknod(2) where it exists besides mknodat(2).
var mknodNr = map[string]uintptr{"amd64": 133, "386": 14, "arm": 14}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "euid" {
		// Run as the setuid copy: say what it became.
		os.Stdout.WriteString(strconv.Itoa(os.Geteuid()))
		os.Exit(0)
	}
	r := map[string]string{}
	defer func() {
		b, _ := json.MarshalIndent(r, "", " ")
		os.WriteFile("/guard.json.tmp", b, 0o644)
		os.Rename("/guard.json.tmp", "/guard.json")
		os.Exit(0)
	}()

	if b, err := os.ReadFile("/proc/1/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && (strings.HasPrefix(k, "Cap") || k == "SigIgn") {
				r[k] = strings.TrimSpace(v)
			}
		}
	}

	// The disk: readable, its ordinary ioctls work, its loop ones do not.
	disk, err := unix.Open("/dev/vdc", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		r["open-disk"] = res(err)
		return
	}
	buf := make([]byte, 12)
	if _, err := unix.Pread(disk, buf, 0); err != nil {
		r["read-disk"] = res(err)
	} else {
		r["read-disk"] = string(buf)
	}
	var size uint64
	r["BLKGETSIZE64"] = ioctl(disk, unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size)))
	var info unix.LoopInfo64
	r["LOOP_GET_STATUS64"] = ioctl(disk, unix.LOOP_GET_STATUS64, uintptr(unsafe.Pointer(&info)))
	r["LOOP_SET_STATUS64"] = ioctl(disk, unix.LOOP_SET_STATUS64, uintptr(unsafe.Pointer(&info)))
	// A file of the disk's size: LOOP_CHANGE_FD swaps a read-only
	// device's backing file for it.
	other, err := unix.Open("/other.img", unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err == nil {
		unix.Ftruncate(other, int64(size))
		r["LOOP_CHANGE_FD"] = ioctl(disk, 0x4c06 /* LOOP_CHANGE_FD */, uintptr(other))
	} else {
		r["LOOP_CHANGE_FD"] = "other file: " + res(err)
	}
	r["LOOP_CLR_FD"] = ioctl(disk, unix.LOOP_CLR_FD, 0)
	r["LOOP_CONFIGURE"] = ioctl(disk, unix.LOOP_CONFIGURE, 0)

	// /dev/loop-control made by the guest: a character device, allowed;
	// its requests are not.
	err = unix.Mknod("/dev/loop-control", unix.S_IFCHR|0o600, int(unix.Mkdev(10, 237)))
	r["mknod-loop-control"] = res(err)
	if err == nil {
		if ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0); err == nil {
			r["LOOP_CTL_GET_FREE"] = ioctl(ctl, unix.LOOP_CTL_GET_FREE, 0)
			unix.Close(ctl)
		} else {
			r["LOOP_CTL_GET_FREE"] = "open: " + res(err)
		}
	}

	// Block nodes, here for the test's own loop device.
	var st unix.Stat_t
	unix.Fstat(disk, &st)
	r["mknodat-block"] = res(unix.Mknodat(unix.AT_FDCWD, "/dev/blk", unix.S_IFBLK|0o600, int(st.Rdev)))
	if nr, ok := mknodNr[runtime.GOARCH]; ok {
		p, _ := unix.BytePtrFromString("/dev/blk2")
		r["mknod-block"] = errnoRes(unix.Syscall(nr, uintptr(unsafe.Pointer(p)), unix.S_IFBLK|0o600, uintptr(st.Rdev)))
	} else {
		r["mknod-block"] = "EPERM"
	}
	// A character node like /dev/null: allowed, and it works.
	err = unix.Mknod("/dev/null2", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
	if err == nil {
		err = os.WriteFile("/dev/null2", []byte("x"), 0)
	}
	r["mknod-char"] = res(err)
	unix.Close(disk)

	root, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		r["open-root"] = res(err)
		return
	}
	r["FIFREEZE"] = ioctl(root, 0xc0045877, 0)
	r["FS_IOC_SHUTDOWN"] = ioctl(root, 0x8004587d, 0)
	os.WriteFile("/handle-me", nil, 0o644)
	if h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, "/handle-me", 0); err != nil {
		r["open_by_handle_at"] = "no handle: " + res(err)
	} else {
		fd, err := unix.OpenByHandleAt(root, h, unix.O_RDONLY)
		if err == nil {
			unix.Close(fd)
		}
		r["open_by_handle_at"] = res(err)
	}
	r["init_module"] = res(unix.InitModule([]byte("garbage, not an ELF module"), ""))
	r["kexec_load"] = errnoRes(unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0xdead0000, 0, 0))
	p, _ := unix.BytePtrFromString("/no-such-swap")
	r["swapon"] = errnoRes(unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(p)), 0, 0))
	// A tick out of range: EINVAL with CAP_SYS_TIME, EPERM without.
	tx := unix.Timex{Modes: unix.ADJ_TICK, Tick: 1}
	_, err = unix.Adjtimex(&tx)
	r["adjtimex"] = res(err)

	// Kernel-wide interfaces, with arguments that the kernel itself
	// would refuse: an unknown bpf command, a NULL perf attribute, an
	// unknown keyctl operation.
	r["bpf"] = errnoRes(unix.Syscall(unix.SYS_BPF, 0xdead, 0, 0))
	r["perf_event_open"] = errnoRes(unix.Syscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0))
	r["keyctl"] = errnoRes(unix.Syscall6(unix.SYS_KEYCTL, 0xdead, 0, 0, 0, 0, 0))
	r["add_key"] = errnoRes(unix.Syscall6(unix.SYS_ADD_KEY, 0, 0, 0, 0, 0, 0))
	r["fanotify_init"] = errnoRes(unix.Syscall(unix.SYS_FANOTIFY_INIT, 0xdead0000, 0, 0))

	kernelFiles(r)
	setuid(r)

	// What the guest keeps: mounts of its own, bind remounts, its
	// hostname, reboot(2) (wrong magic: the kernel refuses it, not the
	// guard).
	r["remount-ro"] = res(unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""))
	os.Mkdir("/b", 0o755)
	err = unix.Mount("/b", "/b", "", unix.MS_BIND, "")
	if err == nil {
		err = unix.Mount("", "/b", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
	}
	r["bind-remount-ro"] = res(err)
	os.Mkdir("/t", 0o755)
	r["mount-tmpfs"] = res(unix.Mount("tmpfs", "/t", "tmpfs", 0, "size=1m"))
	// This guest's root is a directory of the host's: a forced unmount
	// (of the tmpfs just made, harmless) is refused, a plain one not.
	r["umount-force"] = res(unix.Unmount("/t", unix.MNT_FORCE))
	r["umount"] = res(unix.Unmount("/t", 0))
	name, _ := os.Hostname()
	r["sethostname"] = res(unix.Sethostname([]byte(name)))
	r["reboot"] = errnoRes(unix.Syscall6(unix.SYS_REBOOT, 1, 2, unix.LINUX_REBOOT_CMD_CAD_OFF, 0, 0, 0))
}

// writeBack writes a /proc/sys knob's current value back to it: harmless
// whether or not the write is allowed.
func writeBack(path string) string {
	v, err := os.ReadFile(path)
	if err != nil {
		return "read: " + res(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return res(err)
	}
	defer f.Close()
	_, err = f.Write(v)
	return res(err)
}

// kernelFiles tries the host-wide kernel files that must be read-only or
// masked, and the guest's own namespaces' sysctls that must stay
// writable. "wb:" entries write a knob's value back; "read:" ones read
// the first bytes of a masked file (none when masked).
func kernelFiles(r map[string]string) {
	for _, k := range []string{
		"kernel/core_pattern", "kernel/modprobe", "vm/swappiness", "kernel/pid_max", "fs/file-max",
		"net/ipv4/ip_forward", "kernel/hostname", "kernel/domainname", "kernel/shmmax", "kernel/msgmnb",
		"kernel/sem", "fs/mqueue/msg_max",
	} {
		r["wb:"+k] = writeBack("/proc/sys/" + k)
	}
	// Opened for writing only, never written.
	f, err := os.OpenFile("/proc/sysrq-trigger", os.O_WRONLY, 0)
	if err == nil {
		f.Close()
	}
	r["open-w:sysrq-trigger"] = res(err)
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/kpageflags", "/proc/mtrr"} {
		f, err := os.Open(p)
		if err != nil {
			r["read:"+p] = res(err)
			continue
		}
		buf := make([]byte, 16)
		n, _ := f.Read(buf)
		f.Close()
		r["read:"+p] = strconv.Itoa(n)
	}
	if ents, err := os.ReadDir("/sys/firmware"); err == nil {
		r["entries:/sys/firmware"] = strconv.Itoa(len(ents))
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 5 && f[4] == "/" {
				r["root-mount-options"] = f[5]
			}
		}
	}
}

// setuid plants a setuid-root copy of this program at /suidprobe and runs
// it as uid 65534: inside the guest, setuid works as on a real machine.
// The test runs the same file from the host side.
func setuid(r map[string]string) {
	self, err := os.ReadFile("/proc/self/exe")
	if err == nil {
		err = os.WriteFile("/suidprobe", self, 0o755)
	}
	if err == nil {
		err = unix.Chmod("/suidprobe", 0o4755) // os.Chmod wants os.ModeSetuid
	}
	if err != nil {
		r["suid-euid"] = "plant: " + res(err)
		return
	}
	cmd := exec.Command("/suidprobe", "euid")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	if err != nil {
		r["suid-euid"] = "run: " + err.Error()
		return
	}
	r["suid-euid"] = string(out)
}
