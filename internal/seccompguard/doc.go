// Package seccompguard confines a privileged guest's root to the guest:
// it keeps it from reconfiguring the host's filesystems, loop devices,
// kernel, clock and disks.
//
// A guest runs as real root in the host's user namespace. Where cgroup v1
// has a devices controller, plugins/init also puts it in a device cgroup
// (internal/cgroups); this filter does not rely on that. Its root may be an rbind of a host directory, whose
// superblock is the host's: Debian's shutdown runs `mount -o remount,ro /`,
// and that would make the host's filesystem read-only. Two layers, both
// applied just before the guest's PID 1 is executed and inherited by
// every guest process:
//
//   - Install loads a seccomp filter that fails with EPERM a superblock
//     remount (mount(2) with MS_REMOUNT but without MS_BIND; a bind
//     remount changes only that one mount's flags and stays allowed),
//     fspick(2), loop-device ioctls, FIFREEZE/FITHAW/FS_IOC_SHUTDOWN and
//     XFS's by-handle ioctls, mknod of block devices, open_by_handle_at,
//     kexec, module loading and removal, swapon/swapoff, bpf,
//     perf_event_open, the keyring calls (keyctl, add_key, request_key),
//     fanotify_init and, unless the host lets everyone use it,
//     userfaultfd. The reason for each is beside its rule in filter.go.
//   - DropCapabilities takes the capabilities in Dropped out of every
//     set, the bounding set included (caps_linux.go says why for each).
//
// Everything else is allowed: reboot(2) in particular, which in the
// guest's PID namespace only ends the guest.
//
// The filter is written by hand with golang.org/x/net/bpf rather than
// with github.com/elastic/go-seccomp-bpf: that library can match argument
// bits, but its filter allows every system call made through another ABI
// than the native one, and a guest could then run a 32-bit
// `mount -o remount,ro /` (IA32 emulation is enabled on common kernels).
// This filter checks the native ABI and the compat one (x86_64 and i386,
// x32 numbers folded in, aarch64 and arm) with each ABI's own numbers.
//
// It does not set no_new_privs: root holds CAP_SYS_ADMIN, which is enough
// to install a filter, and no_new_privs would break the guest's setuid
// programs (su, sudo, ping).
package seccompguard
