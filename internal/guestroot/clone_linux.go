package guestroot

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// CloneSelf mounts a recursive clone of the root onto itself and reopens
// it, so that it is a mount point, as pivot_root requires, and the
// guest's own: the mount stages mount the root nosuid and nodev on the
// host side (HOME/live), where a setuid program the tenant planted must
// not work for the host's users; the clone drops nosuid so that setuid
// works inside the guest as on a real machine. nodev stays: the guest's
// device nodes are on its own tmpfs /dev, and a node shipped in a
// tenant's image must not open a host device where no device cgroup
// applies. Only the clone's top mount is changed; mounts below it keep
// their flags.
//
// It must run in a private mount namespace whose / is already a slave
// (nothing may propagate to the host), and before the guest's namespaces
// could lock the clone's flags (a user namespace of its own).
func (r *Root) CloneSelf() error {
	fd := int(r.dir.Fd())
	tfd, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("clone the guest root %q: open_tree: %w", r.path, err)
	}
	defer unix.Close(tfd)
	attr := unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_NOSUID}
	if err := unix.MountSetattr(tfd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("clone the guest root %q: let setuid work: mount_setattr: %w", r.path, err)
	}
	if err := unix.MoveMount(tfd, "", fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("clone the guest root %q: move_mount: %w", r.path, err)
	}
	return r.Reopen()
}

// HostSideAttrs are the flags of the guest root's mount on the host side
// (HOME/live): no setuid program and no device node the tenant put there
// works for the host's users.
const HostSideAttrs = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV

// SecureHostSide sets HostSideAttrs on the mount at live (a mount point
// the host chose, not a path inside the guest): for a root that a mount
// stage adopts, mounted before it set them itself.
func SecureHostSide(live string) error {
	fd, err := unix.Open(live, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", live, err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: HostSideAttrs}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("make %s nosuid,nodev: mount_setattr: %w", live, err)
	}
	return nil
}
