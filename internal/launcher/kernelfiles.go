package launcher

// What of the kernel's /proc and /sys a privileged guest may write or
// read. Its root is root in the host's user namespace, so most kernel
// files it sees are the host's: the launcher makes them read-only or
// masks them, as LXC (proc:mixed), systemd-nspawn and runc do. The README
// lists them with the same reasons.

// writableSysctls are the /proc/sys entries that belong to the guest's
// own namespaces and stay writable under an otherwise read-only
// /proc/sys: its network namespace's and its UTS and IPC namespaces'.
// An entry this kernel lacks is skipped.
var writableSysctls = append([]string{
	"/proc/sys/net",               // the guest's network namespace (ip_forward, rp_filter, its interfaces')
	"/proc/sys/kernel/hostname",   // its UTS namespace
	"/proc/sys/kernel/domainname", // its UTS namespace
	"/proc/sys/fs/mqueue",         // its IPC namespace's POSIX message queue limits
}, ipcSysctls()...)

// ipcSysctls are /proc/sys/kernel's System V IPC limits, which belong to
// the guest's IPC namespace: the kernel's whole list (ipc/ipc_sysctl.c),
// named rather than found by listing /proc/sys/kernel, whose first
// listing on the guest's fresh proc costs the launcher, on every boot's
// critical path, a few tenths of a millisecond making a hundred-odd
// entries. One a later kernel adds stays read-only, the safe way to
// be wrong.
func ipcSysctls() []string {
	var out []string
	for _, name := range []string{
		"shmmax", "shmall", "shmmni", "shm_rmid_forced", "shm_next_id",
		"msgmax", "msgmni", "msgmnb", "msg_next_id",
		"sem", "sem_next_id",
	} {
		out = append(out, "/proc/sys/kernel/"+name)
	}
	return out
}

// readOnlyKernelFiles are made read-only over themselves (runc's and
// Docker's ReadonlyPaths; /proc/sys is handled apart, with its writable
// entries).
var readOnlyKernelFiles = []struct{ path, why string }{
	{"/proc/sysrq-trigger", "a write reboots, crashes or syncs the host kernel"},
	{"/proc/bus", "PCI and USB configuration space of the host's devices"},
	{"/proc/fs", "host filesystems' settings (nfsd exports, ext4, xfs stats knobs)"},
	{"/proc/irq", "the host's interrupt affinity"},
}

// maskedKernelFiles are hidden: a file under the guest's /dev/null, a
// directory under an empty read-only tmpfs (runc's and Docker's
// MaskedPaths).
var maskedKernelFiles = []struct{ path, why string }{
	{"/proc/kcore", "the host kernel's memory, as an ELF core"},
	{"/proc/keys", "every key of the host's keyrings that root may view"},
	{"/proc/timer_list", "the host's timers, with kernel addresses and other processes' details"},
	{"/proc/timer_stats", "who sets timers on the host (old kernels)"},
	{"/proc/sched_debug", "every host process's scheduling details (old kernels; now in debugfs)"},
	{"/proc/latency_stats", "kernel call stacks of latency on the host"},
	{"/proc/interrupts", "host-wide interrupt counts, a side channel on other tenants' activity"},
	{"/proc/acpi", "ACPI controls of the host machine (old kernels)"},
	{"/proc/asound", "the host's sound cards"},
	{"/proc/scsi", "the host's SCSI devices; scsi/device_info is writable"},
	{"/proc/mtrr", "the host CPUs' memory caching ranges: a write changes them for the whole machine"},
	{"/proc/kpageflags", "every physical page's flags, a side channel on the host's memory"},
	{"/proc/kpagecount", "every physical page's use count, the same side channel"},
	{"/proc/kpagecgroup", "every physical page's cgroup, the same side channel"},
	{"/sys/firmware", "firmware tables (ACPI, DMI, EFI variables) of the host machine"},
	{"/sys/devices/virtual/powercap", "energy counters (RAPL), a side channel on the host's computations (PLATYPUS)"},
}

// ProtectedPaths are the guest paths the launcher mounts over to make
// kernel files read-only or to hide them; /proc/sys and what is below it
// are handled apart.
func ProtectedPaths() []string {
	var out []string
	for _, f := range readOnlyKernelFiles {
		out = append(out, f.path)
	}
	for _, f := range maskedKernelFiles {
		out = append(out, f.path)
	}
	return out
}
