// Command init is the subhost stage that boots the guest: the boot loader
// of a subhost.
//
// Up injects subhost-init (the guest's PID 1, a small static binary built
// beside this plugin, see cmd/subhost-init) into the guest root at
// /sbin/subhost-init, rewriting it only where the guest's copy differs,
// and starts the guest and returns its PID. The two overlap: the copy is
// compared (2 MB read from a freshly mounted image) while the launcher
// sets the guest up, and the launcher goes on to join the guest's
// cgroups and execute it only once the plugin says subhost-init is in
// place.
//
//   - The plugin starts subhost-launch (built beside it, executed through
//     the descriptor it checked) with
//     new mount, PID, UTS and IPC namespaces, on a thread that has joined
//     the boot record's netns (a new, empty one when the record has
//     none). The child has its own session and process group (the runner
//     kills each plugin's group after use) and no parent-death signal:
//     it must outlive the plugin. Once the plugin exits, the guest is the
//     child of the runner, a child subreaper, which supervises it.
//   - The child, PID 1 of the new PID namespace, makes / rslave before
//     anything is mounted, mounts a clone of the root onto itself (the
//     mount stages mount it nosuid on the host; the clone lets setuid
//     work inside), and mounts /proc (with /proc/sys read-only but for the
//     guest's own namespaces' entries, and host-wide kernel files
//     read-only or masked: kernelfiles.go), /sys (read-only, its netns's
//     view), a tmpfs /dev with only
//     null, zero, full, random, urandom, tty, a new devpts instance with
//     ptmx, shm, the fd/stdin/stdout/stderr links, the boot record's disk
//     nodes and the console pty bound on /dev/console, and a tmpfs /run.
//     It then joins the guest's cgroups and unshares a cgroup namespace
//     rooted there (see below), sets the hostname to the subhost's name,
//     pivot_roots into the
//     root, reopens the console (or /dev/null) inside the guest as fds 0,
//     1 and 2, marks every other descriptor close-on-exec, installs the
//     seccomp guard (internal/seccompguard) and executes
//     /sbin/subhost-init --mode M --shell S --shutdown-timeout D with
//     exactly container=subhost, PATH, TERM and HOME in its environment.
//   - The guest root is untrusted (internal/guestroot): every mount
//     target is opened inside it without following any symlink and
//     mounted through its descriptor; a root whose /proc, /sys, /dev or
//     /run is a symlink fails the boot with a clear error and nothing
//     outside the root is touched. A failure in the child comes back
//     over a close-on-exec pipe: end of file with no data means the
//     exec succeeded.
//
// The guest is root with CAP_SYS_ADMIN and CAP_MKNOD: a device node is
// all it needs to open a host device, and `mount -t devtmpfs` gives it
// one for each. What it may open is the device policy's business, which
// the cgroup stage (plugins/cgroup, internal/cgroups) applies before init
// runs, together with the resource limits: on subhost/NAME of every
// hierarchy, the guest's own cgroup being subhost/NAME/guest. init only
// places the guest there: the launcher joins the boot record's guest
// cgroups itself, after making the disk nodes (the allow-list grants no
// block mknod) and before anything of the guest's runs, and only then
// unshares a cgroup namespace, on the thread that will exec subhost-init
// (a cgroup namespace is a thread's): rooted at NAME/guest, the guest
// sees its cgroup as "/", and neither sees nor can change the limits and
// device policy of NAME, which bind it; nor does it see any hierarchy's
// root, whose release_agent would run a program of its choosing on the
// host. A namespace unshared before the join would be rooted at the
// host's cgroups. A reboot's new guest goes into the same cgroups.
//
// Up refuses (invalid config) a boot record that carries no device
// policy, which a pipeline without the cgroup stage gives, unless the
// config sets DEVICE_POLICY=none: a guest with no device policy could
// open any host device. The console is a 136:N node of the host's
// devpts, bound on /dev/console; the allow-list's 136:* does not open
// other host ptys, since a pty slave is found from the devpts inode it is
// opened through. A read-only disk is read-only twice: its loop device
// is attached read-only by the mount stage, and the device policy grants
// only "r". Down thaws the recorded cgroups before it stops the guest (a
// frozen process does not die of SIGKILL); the cgroup stage removes
// them. Names with a dot, "tasks", "notify_on_release" and
// "release_agent" cannot name a cgroup and are refused by Validate.
//
// State is {"pid":N,"start_time":T,"root":"/path"}; the record gets
// guest_pid, guest_start_time and hostname. Up with a state naming a live
// guest returns it again. Down sends SIGPWR to the guest's PID 1 (a power
// off for subhost-init; repeated, since the kernel drops it while a just
// started PID 1 has no handler yet), waits up to shutdown_timeout, then
// SIGKILLs it, which ends the whole PID namespace; it signals only
// through a pidfd whose start time matched the recorded one.
// /sbin/subhost-init stays in the root.
//
// The runner records Up's result only once Up has returned, so a runner
// killed while Up was pending, or a plugin killed for a timeout, would
// leave a guest no state names: nobody would stop it, and it would keep
// the root's file system busy for the mount stage's Down. So the plugin
// keeps a launch record of its own, /run/subhost/.init/NAME.HASH.json
// (HASH from the subhost's home, so that subhosts of one name under
// different state directories never share one; root-only, replaced
// atomically) holding name, home, pid, start_time and root. It is
// written as soon as the launcher process exists and before the launcher
// is sent its config, without which it exits: no guest runs unrecorded.
// A launch that fails, or whose caller has given up (context done),
// kills and reaps the launcher and removes the record. Down stops every
// guest that the state, the boot record or the launch record names (each
// identity checked as above, so a stale record whose PID now belongs to
// another process is never signalled) and removes the record once its
// guest is gone. Check falls back on it. Up, finding a live guest that
// only the launch record knows (an interrupted boot's, with no
// supervisor and a dead console), powers it off as Down would before
// booting afresh, so two guests never share a root. The record of a
// guest that ended by itself (a hibernating subhost) stays until Down or
// the next launch; its start time makes it harmless.
package main
