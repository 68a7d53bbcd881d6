// Package cgroups owns a subhost's cgroups: its resource limits, the
// device policy that keeps a guest to its own devices, on cgroup v1 and
// v2, and where the guest is placed so that its cgroup namespace shows it
// no cgroup but its own. The cgroup stage (plugins/cgroup) drives it;
// init's launcher joins the guest cgroups it records (so does everything
// the guest's PID 1 starts, `subhost enter`'s commands included), and
// status reads usage from them.
//
// Layout. Setup makes, at the root of every mounted hierarchy (never
// below the caller's own cgroup, which may be a service manager's or, as
// on the build host, memory:/process_api/...), Dir/NAME, which holds the
// limits and the device policy, and below it Dir/NAME/Guest, where the
// guest's PID 1 goes and where its cgroup namespace is rooted: the
// limits are out of its sight and reach, even with CAP_SYS_ADMIN. A
// cgroup namespace made at a hierarchy's root would show the guest that
// root, and a v1 root's release_agent names a program the kernel runs as
// root on the host; so the guest is placed in every hierarchy, limits or
// not.
//
// The one exception is a cgroup a service manager delegated: under
// systemd, `run --supervise` in a unit with Delegate=yes
// (subhost@.service) finds its unit's cgroup (FindDelegation: systemd's
// environment, a *.service cgroup of its own, marked trusted.delegate=1
// by systemd 251 and later), moves itself into the leaf UNIT/Leaf
// (EnterLeaf: cgroup v2 enables controllers only below a cgroup without
// processes) and passes the unit's cgroup to the cgroup stage
// (sdk.Request.CgroupParent). Setup then makes UNIT/Dir/NAME and
// UNIT/Dir/NAME/Guest, same layout, in the cgroup2 tree and, on hybrid
// hosts, systemd's name=systemd hierarchy: the guest is the unit's,
// accounted and, should the supervisor be killed, killed and removed
// with it. The v1 controller hierarchies keep the fixed place (see
// followsUnit). The boot record carries the real paths, so Remove (with
// the fixed place and the parent) and Apply also go by the record.
//
// Limits come from config variables (Vars; FromConfig, Limits.Set, each
// error naming the variable). Each goes to the cgroup v1 hierarchy that
// has its controller, else to the cgroup2 tree when its root offers the
// controller (only the controllers the limits need are enabled in
// cgroup.subtree_control); a limit given explicitly that no hierarchy
// can apply is refused (IO_WEIGHT on a v1 blkio without weight files).
// What is written to which file is pure code (v1Settings, v2Settings),
// tested without root. On v1, MEMORY_SWAP_MAX becomes memory+swap
// (memsw = MEMORY_MAX + MEMORY_SWAP_MAX), MEMORY_HIGH the soft limit,
// CPU_WEIGHT cpu.shares (weight*1024/100) and IO_WEIGHT blkio.weight
// (weight*5, 10..1000), as systemd maps them. We write cgroupfs files
// ourselves rather than use github.com/opencontainers/cgroups: it is not
// among the dependencies, its v1 manager places cgroups relative to
// paths it is given and its fs2 manager expects a pure v2 mount at
// /sys/fs/cgroup and enables every offered controller, neither of which
// fits a hybrid host; what subhost needs is a few dozen file writes.
//
// Device policy. On cgroup v1, Dir/NAME and Dir/NAME/Guest in the
// devices hierarchy deny every device but Rules' allow-list: the
// character devices of the guest's /dev, TUN and FUSE (Standard says
// which and why not the host console, 5:1), and the boot record's disks,
// read-only ones "r". A v1 device cgroup never allows more than its
// parent, so the guest cannot widen its list. Wherever a cgroup2 tree is
// mounted (v2 hosts, and hybrid ones such as the build host's
// /sys/fs/cgroup/unified), a BPF_PROG_TYPE_CGROUP_DEVICE program built
// from the same list (devprog_linux.go, with github.com/cilium/ebpf) is
// attached to Dir/NAME with BPF_F_ALLOW_MULTI: every program on the path
// must allow an access, so one the guest attached below could only deny
// more. On hybrid hosts both apply. A host where neither can be applied
// fails the boot unless the config says DEVICE_POLICY=none.
//
// Remove thaws (v1 freezer and cgroup.freeze), kills whatever is left
// and removes the tree, with any cgroups the guest made below its own,
// deepest first. ReadInForce and ReadUsage read limits and counters back
// for Check and status; Apply writes changed limits into a running
// subhost's cgroups (subhost set).
package cgroups
