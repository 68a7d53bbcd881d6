// Package mountfd makes detached mounts (the new mount API: open_tree,
// fsopen/fsmount, mount_setattr, move_mount) and attaches them through
// descriptors: the one place subhost makes mounts that way. The host
// prepares some with its own privileges for a guest's launcher to attach
// inside the guest's mount namespace:
//
//   - an idmapped clone of a guest root, so that the guest's root (a
//     host uid range through its user namespace) sees the image's uid 0
//     files as its own and creates uid 0 files, while nothing on disk is
//     ever chowned;
//   - a tmpfs for /dev, made by the host because a tmpfs mounted inside a
//     user namespace is nodev and mknod of a device is refused there;
//   - a data disk's file system (MOUNTS), which a guest in a user
//     namespace could not mount from a block device;
//   - idmapped clones of an overlay's layers, for an overlay assembled
//     inside a guest's user namespace (the mount-overlay stage).
//
// The launcher makes others for itself: read-only clones of /proc files
// and empty read-only tmpfs masks (guestroot.Root.Attach puts them on
// targets opened inside the guest root).
//
// A detached mount never appears in the host's mount table: closing its
// last descriptor before it is attached unmounts it, and once attached it
// lives and dies with the guest's mount namespace. Nothing is left to
// clean up on the host.
package mountfd
