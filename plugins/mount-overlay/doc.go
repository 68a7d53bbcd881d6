// Command mount-overlay is the subhost stage that gives a `control`
// subhost its root filesystem, as the control script did, in the tree
// HOME = $SUBHOST/NAME:
//
//	HOME/config    the config (bash syntax, parsed, never run)
//	HOME/live      the guest root: what this stage mounts (made if missing)
//	HOME/root      the subhost's files, or the overlay's upper layer
//	HOME/work      the overlay's work directory
//	HOME/NAME.img  optional: a bare filesystem image with /root and /work
//	HOME/mnt       where NAME.img is mounted (made if missing)
//
// Without BASE in the config, live is a recursive bind of root. With
// BASE (one directory, or a colon-separated list, uppermost first, of
// shared read-only lower directories) live is an overlay: lower = BASE,
// upper = root, work = work. With HOME/NAME.img (an ext2/3/4, XFS or Btrfs
// filesystem, no partition table) the image is attached to an autoclear
// loop device and mounted on mnt (nosuid, nodev, noexec: the host does not
// run the tenant's programs from there), and root and work inside it are
// used instead of HOME's. live is nosuid and nodev on the host: the
// guest's own view of it is a clone (made by the init stage) where setuid
// works.
//
// The tenant controls the files in root and the image's content, so:
// root and work inside the image are opened without following any symlink
// and must be directories of the image's filesystem; every layer is handed
// to the kernel as a file descriptor with the new mount API (overlayfs
// "lowerdir+", "upperdir" and "workdir" through FSCONFIG_SET_FD, which
// needs Linux 6.13 or later; rbind through open_tree), never as a path
// string; and the overlay is mounted with redirect_dir=nofollow,
// metacopy=off, index=off and xino=off, so no overlay xattr in the upper
// layer can point the merged view elsewhere. Paths may still not contain
// , : = \ or whitespace, so that mountinfo reads back unambiguously.
//
// Validate checks, without changing anything: the directories exist,
// upper and work share one mount, work is empty or only holds what
// overlayfs made there, no layer overlaps another, and neither upper nor
// work is in use by another mount (another subhost's overlay or rbind);
// the image is a regular file holding a known filesystem and is not
// attached or mounted elsewhere. What is inside the image can only be
// checked once it is mounted: Up does that, and unmounts it again when the
// check fails.
//
// Up is idempotent: mounts on mnt and live that are already what they
// should be (a hibernated subhost's) are adopted; anything else there is a
// conflict. Down unmounts live (and anything mounted below it), then mnt,
// then detaches the image's loop devices, found by backing file; it works
// from HOME alone, whatever the config says now, and leaves a mount that
// is not this subhost's alone. A busy mount is reported with the processes
// that hold it, and never lazily detached.
package main
