package seccompguard

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Dropped lists the capabilities a guest never has, with why: the guest is
// real root in the host's user namespace, so each of these reaches the
// whole host, not the guest's namespaces. DropCapabilities takes them out
// of the bounding set (so no later execve, setuid program or file
// capability brings them back) and out of the effective, permitted,
// inheritable and ambient sets.
//
// Kept on purpose: CAP_SYS_ADMIN (the guest mounts inside its own mount
// namespace, sets its hostname), CAP_NET_ADMIN and CAP_NET_RAW (its own
// network namespace), CAP_SYS_BOOT (subhost-init's reboot(2), which in a
// child PID namespace only ends the guest; kexec is refused by the
// seccomp filter), CAP_MKNOD (character nodes; block nodes are refused by
// the filter), CAP_DAC_OVERRIDE, CAP_CHOWN, CAP_FOWNER, CAP_SETUID,
// CAP_SETGID, CAP_SETPCAP, CAP_KILL, CAP_SYS_CHROOT, CAP_SYS_PTRACE
// (processes it can see are its own), CAP_AUDIT_WRITE and the rest a
// Debian system's scripts and daemons expect of root.
var Dropped = []struct {
	Cap  int
	Name string
	Why  string
}{
	{unix.CAP_SYS_MODULE, "CAP_SYS_MODULE", "loading or removing the host kernel's modules"},
	{unix.CAP_SYS_RAWIO, "CAP_SYS_RAWIO", "raw I/O: /dev/mem, /dev/port, iopl/ioperm, MSRs, any SCSI command through SG_IO"},
	{unix.CAP_SYS_TIME, "CAP_SYS_TIME", "the clock is the host's: settimeofday, clock_settime, adjtimex"},
	{unix.CAP_WAKE_ALARM, "CAP_WAKE_ALARM", "timers that wake the host from suspend"},
	{unix.CAP_BLOCK_SUSPEND, "CAP_BLOCK_SUSPEND", "keeping the host from suspending"},
	// CAP_SYS_ADMIN, kept, also grants what these two do; the seccomp
	// filter refuses bpf(2) and perf_event_open(2) themselves.
	{unix.CAP_BPF, "CAP_BPF", "loading eBPF programs into the host kernel: tracing that reads any memory, hooks on the host's cgroups and devices"},
	{unix.CAP_PERFMON, "CAP_PERFMON", "perf events of the whole machine: kernel addresses, other processes' samples, kprobes"},
	{unix.CAP_SYSLOG, "CAP_SYSLOG", "the host kernel's log (syslog(2), /dev/kmsg under dmesg_restrict) and kernel addresses in /proc"},
	{unix.CAP_MAC_ADMIN, "CAP_MAC_ADMIN", "changing the host's LSM policy (AppArmor, SELinux, Smack)"},
	{unix.CAP_MAC_OVERRIDE, "CAP_MAC_OVERRIDE", "bypassing the host's LSM policy"},
	{unix.CAP_AUDIT_CONTROL, "CAP_AUDIT_CONTROL", "changing the host's audit rules or disabling audit"},
	{unix.CAP_AUDIT_READ, "CAP_AUDIT_READ", "reading the host's audit log"},
	// CAP_DAC_OVERRIDE, kept, already lets root read and search every
	// file and directory of its tree; what this one adds is
	// open_by_handle_at (the "shocker" escape: any file of the
	// filesystem, outside the guest's tree, by a forged handle; the
	// seccomp filter refuses it too) and linkat(AT_EMPTY_PATH) on a
	// descriptor it did not open itself.
	{unix.CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH", "open_by_handle_at: reading host files by handle"},
}

// DropCapabilities takes Dropped out of the calling thread's bounding,
// effective, permitted, inheritable and ambient sets. Capabilities are
// per thread, and execve keeps only the calling thread's: it locks the
// calling goroutine to its thread for good, and the caller must execute
// the guest from that goroutine. The caller needs CAP_SETPCAP.
func DropCapabilities() error {
	runtime.LockOSThread() // never unlocked: see above
	for _, c := range Dropped {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c.Cap), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			continue // a capability this kernel does not know: nobody has it
		}
		if err != nil {
			return fmt.Errorf("drop %s from the bounding set: %w", c.Name, err)
		}
	}
	// Ambient capabilities would survive an execve of any program; none
	// should be set, and clearing them is harmless.
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear the ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read the capabilities: %w", err)
	}
	for _, c := range Dropped {
		i, bit := c.Cap/32, uint32(1)<<(c.Cap%32)
		data[i].Effective &^= bit
		data[i].Permitted &^= bit
		// execve gives root its inheritable set even outside the
		// bounding set.
		data[i].Inheritable &^= bit
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("drop the capabilities: %w", err)
	}
	return nil
}

// DroppedMask is Dropped as a bit mask, as /proc/PID/status shows
// capability sets.
func DroppedMask() uint64 {
	var m uint64
	for _, c := range Dropped {
		m |= 1 << c.Cap
	}
	return m
}
