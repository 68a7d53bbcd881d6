// Package devcgroup keeps a guest to its own devices with a cgroup v1
// device cgroup, and places it so that its cgroup namespace shows it no
// cgroup but its own.
//
// A guest is root with CAP_SYS_ADMIN and CAP_MKNOD in the host's user
// namespace. Without a device cgroup, a device node is all it needs to
// open any host device: `mount -t devtmpfs none /x` gives it every one
// (the host's disks, other subhosts' loop devices), and so do nodes in
// its own image once a bind remount clears nodev. The seccomp guard
// refuses block mknod, which these ways do not need.
//
// Setup makes, in each hierarchy's root, subhost/NAME and below it
// subhost/NAME/guest (layout in Dir and Guest). In the devices hierarchy
// both deny every device but the allow-list Rules gives: the character
// devices of the guest's /dev, TUN and FUSE (Standard says which and why
// not the host console, 5:1), and the boot record's disks, read-only
// ones "r". The guest's PID 1 to be joins the guest cgroups (Join) and
// then unshares a cgroup namespace, which the launcher in plugins/init
// does: rooted there, the guest sees its own cgroup as "/", and the
// policy that binds it, subhost/NAME, is out of its sight and reach. A
// cgroup v1 device cgroup cannot allow more than its parent, so the
// guest cannot widen its own list either, with any capability.
//
// The guest also goes in subhost/NAME/guest of every other hierarchy in
// which the caller sits at the root (no limits are set there): a cgroup
// namespace made at a hierarchy's root shows the guest that root, and a
// v1 root's release_agent, which root in the host's user namespace may
// write, names a program the kernel runs as root on the host. Where the
// caller is in a cgroup of its own (a service manager's), the guest stays
// with it; its namespace is then rooted at that cgroup, whose knobs it
// can reach.
//
// Remove takes the tree away again, with any cgroups the guest made
// below its own, deepest first; a cgroup that still holds processes is
// left, with ErrBusy. JoinGuest is for a command entered into a running
// guest from outside, to be confined as the guest is.
//
// On a host without cgroup v1's devices controller (cgroup v2 only),
// Setup still places the guest and reports Devices false: the device
// policy is not applied there. Cgroup v2 has no device files; its device
// controller is a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the
// guest's cgroup, the next step.
package cgroups
