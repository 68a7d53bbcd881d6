// Package mountfd makes detached mounts (the new mount API: open_tree,
// fsopen/fsmount, mount_setattr, move_mount) that the host prepares with
// its own privileges and a guest's launcher attaches inside the guest's
// mount namespace through the descriptor:
//
//   - an idmapped clone of a guest root, so that the guest's root (a
//     host uid range through its user namespace) sees the image's uid 0
//     files as its own and creates uid 0 files, while nothing on disk is
//     ever chowned;
//   - a tmpfs for /dev, made by the host because a tmpfs mounted inside a
//     user namespace is nodev and mknod of a device is refused there;
//   - a data disk's file system (MOUNTS), which a guest in a user
//     namespace could not mount from a block device.
//
// A detached mount never appears in the host's mount table: closing its
// last descriptor before it is attached unmounts it, and once attached it
// lives and dies with the guest's mount namespace. Nothing is left to
// clean up on the host.
package mountfd
