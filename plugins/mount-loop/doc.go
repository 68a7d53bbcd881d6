// Command mount-loop is the subhost stage that gives a pretend-boot
// subhost its disks, as the pretend-boot script did: every element of the
// config's DISKS=( dev:part:image ... ) is a disk image attached to loop
// devices, and the first element's partition is the root filesystem,
// mounted read-write on HOME/live (created if missing).
//
// # Partitions without kernel partition parsers
//
// The stage reads each image's MBR or GPT itself (internal/parttable,
// treating it as untrusted: bounds, overlaps, CRCs, extended-partition
// chains) and attaches every partition it needs as its own loop device
// with an offset and a size limit. It never asks the kernel to scan a
// partition table, so it works the same on kernels with and without
// partition parsers (CONFIG_MSDOS_PARTITION, CONFIG_EFI_PARTITION). Part 0
// means the image is a bare filesystem.
//
// # Loop devices
//
// For DISKS[0] (vda:1:IMG) the stage attaches:
//   - the root partition, read-write with LO_FLAGS_AUTOCLEAR, mounted on
//     live (nosuid, nodev: the guest sees a clone where setuid works; the filesystem type read from its superblock by
//     internal/fsdetect: ext2/3/4, XFS, Btrfs, F2FS or FAT) while the stage
//     holds the device open, so the kernel frees the device when live is
//     unmounted;
//   - /dev/vda and /dev/vda1 for the guest, each a read-only loop device
//     (LO_FLAGS_READ_ONLY, Device.ReadOnly in the boot record): the guest
//     must not write raw to the partition the host has mounted, and file
//     modes would not stop the guest's root.
//
// For every other disk (vdb:1:IMG2): read-write devices for /dev/vdb and
// /dev/vdb1. Guest-node devices are not autoclear: nothing holds them open
// between Up and the guest's start, so autoclear would free them as soon
// as the stage closed them. Down finds them again instead.
//
// Every device carries the owner tag "subhost:NAME" in its lo_file_name
// (internal/loopdev). Devices are recorded and rediscovered by backing
// file (device and inode) and tag, never by number alone.
//
// # Up, Down, Check
//
// Validate checks every DISKS element (three fields; dev a plain name not
// needed by the guest's own /dev; no duplicate or clashing nodes such as
// vda:1 with vda1:0; part a non-negative integer; image an absolute path to
// a regular file of at least a sector, not shared with another element;
// the partition exists; the root holds a known filesystem) and that no
// image is attached for anyone else, all without changing anything. Up
// does the same again before it attaches anything; it adopts what this
// subhost already has (live mounted from its root device, its tagged node
// devices), so it is idempotent, and rolls back what it attached if it
// fails.
//
// Down works from an empty state: it unmounts live if this subhost's root
// device is mounted there (anything else mounted there is reported and
// left), and detaches every device tagged for this subhost on one of its
// images (from the state and from DISKS). A busy mount or device is not
// detached lazily: the error names what holds it (processes' cwd, root,
// open files and memory maps, submounts, other mount namespaces; found by
// internal/holders).
// Devices on its images attached by someone else are left alone.
package main
