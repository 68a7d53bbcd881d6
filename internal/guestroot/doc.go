// Package guestroot works inside a guest's root filesystem from the host.
//
// The guest root is untrusted: its tenant controls every file and symlink
// in it. A path string joined onto the root and then used by the host
// follows the tenant's symlinks and is how most container-runtime escapes
// happened, so nothing here does that. Every object is reached from an
// opened directory file descriptor:
//
//   - mount targets ([Root.MountDir]) are walked one component at a time
//     with openat2(RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS|RESOLVE_BENEATH):
//     a symlink anywhere on the way, even one that would stay inside the
//     root, is refused with a [SymlinkError]; a missing directory is
//     created with mkdirat relative to its verified parent;
//   - a mount is made through the target's descriptor (/proc/self/fd/N),
//     after /proc/self/fd/N has been read back and found inside the root
//     ([Root.Inside]), and is verified afterwards by its filesystem magic;
//   - files the host installs ([Root.InstallFile]) resolve their directory
//     with pathrs-lite, which confines symlinks to the root (Debian's
//     /sbin -> usr/sbin keeps working, /sbin -> /etc resolves to
//     ROOT/etc), and are written to a temporary file created with
//     O_EXCL|O_NOFOLLOW in that directory and renamed over the final name,
//     so a symlink planted at the final name is replaced, never followed;
//   - device nodes ([Mknod]) are made with mknodat relative to an opened
//     /dev and re-checked for type and major:minor.
package guestroot
