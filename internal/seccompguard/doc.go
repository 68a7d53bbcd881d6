// Package seccompguard keeps a privileged guest from changing any
// filesystem's superblock.
//
// A guest runs as real root in the host's user namespace. Its root may be
// an rbind of a host directory, whose superblock is the host's: Debian's
// shutdown runs `mount -o remount,ro /`, and that would make the host's
// filesystem read-only. The guard is a seccomp filter, installed just
// before the guest's PID 1 is executed and inherited by every guest
// process, that fails with EPERM:
//
//   - mount(2) with MS_REMOUNT but without MS_BIND (a superblock
//     reconfiguration; a bind remount changes only that one mount's flags
//     and stays allowed);
//   - fspick(2), the new mount API's way to reopen an existing superblock
//     for reconfiguration.
//
// Everything else is allowed. The filter is written by hand with
// golang.org/x/net/bpf rather than with github.com/elastic/go-seccomp-bpf:
// that library can match argument bits, but its filter allows every system
// call made through another ABI than the native one, and a guest could then
// run a 32-bit `mount -o remount,ro /` (IA32 emulation is enabled on
// common kernels). This filter checks the native ABI and the compat one
// (x86_64 and i386 with x32 numbers folded in, aarch64 and arm).
//
// It does not set no_new_privs: root holds CAP_SYS_ADMIN, which is enough
// to install a filter, and no_new_privs would break the guest's setuid
// programs (su, sudo, ping).
package seccompguard
