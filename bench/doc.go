// Command bench measures what subhost costs on top of a bare container:
// boot and stop latency of a busybox guest booted from a disk image with
// the pretend-boot pipeline, beside a floor, and the supervisor's memory.
// Run it as root from the project's root: `make bench` (or
// `go run ./bench -n 25 -v` after `make build`; `make bench BENCHFLAGS=-v`).
//
// Setup (all on a tmpfs scratch directory, so disk I/O does not blur the
// figures): a busybox root built from Debian's static busybox, a 64 MiB
// MBR image made from it with `subhost image build`, a sparse copy of that
// image for the floor, and a throwaway network namespace holding one
// bridge. The subhost's config is DISKS=( vda:1:IMAGE ) and one interface
// on that bridge; subhost runs inside that namespace (nsenter --net).
//
// Readiness: the guest's /etc/init.d/rcS ends with `: >/bench/ready`, a
// file on the guest's root filesystem, and the benchmark polls for it
// every 0.5 ms from the host side of the same mounted filesystem
// (HOME/live/bench/ready for subhost, the floor's mount point for the
// floor), removing it once seen. This adds nothing to the guest (no bind
// mount, no FIFO, no change to the pipeline or its stages) and is the
// same signal for both sides; a FIFO would be more exact but needs a
// reader in place before HOME/live is even mounted.
//
// Each of the -n measured rounds (after one warm-up round) does the
// following, every boot 200 ms after the last teardown (the kernel
// finishes removing a netns, a veth pair and cgroups in the background
// for tens of milliseconds after the command returned):
//
//   - floor: `unshare --mount --pid --uts --ipc --net --fork
//     --propagation unchanged sh -c SCRIPT` where SCRIPT makes / rslave,
//     bind-mounts the root onto itself, mounts /proc, a read-only /sys, a
//     tmpfs /dev filled from a template (null, zero, full, random,
//     urandom, tty, the partition's node, fd/std* links) with its own
//     devpts and /dev/shm, and a tmpfs /run, sets the hostname,
//     pivot_roots (pivot_root . ., umount -l .) and execs busybox sh
//     /etc/init.d/rcS with container=subhost; timed from before unshare
//     until the marker. The image copy is loop-mounted once for the whole
//     run. The floor does not attach a loop device or mount the image, make
//     a named netns, veth pair or bridge port, start plugins, write state,
//     inject or run subhost-init, install the seccomp guard, open a pidfd
//     or own a console pty; rcS is its PID 1.
//   - boot: `subhost run --detach` until the marker (also: until the
//     command returned, which is when the guest's PID 1 runs).
//   - memory: VmRSS of the `subhost __supervise` process, and the sum over
//     its whole process tree minus the guest's PID 1 and its descendants;
//     per-stage Up durations from `subhost status --json`.
//   - before (with -before-bin DIR, the bin/ of another build, say the
//     commit before a change): the same guest booted and stopped (both
//     timed) with that build in the same round, first in every other round
//     and last in the others (whichever boots second follows the other's
//     stop), so that a change's cost is read from one run whatever the
//     machine's load does meanwhile. Or the same build's twin of the guest:
//     with -private-users alone, the guest booted privileged (an
//     unprivileged boot may cost at most 8 ms more); with -without-cgroup,
//     the guest booted with pretend-boot less its cgroup stage (skipped by a
//     `when` its config never sets, with DEVICE_POLICY=none): the stage may
//     cost at most 5 ms. The boot timeline then shows the twin's marks
//     beside.
//   - CPU time: each boot and each stop command is started straight into
//     a cgroup2 directory of the benchmark's own (clone3's
//     CLONE_INTO_CGROUP; cgroup2 keeps cpu.stat with no controller
//     enabled), and the CPU time used there meanwhile is the boot's or
//     the stop's: the front, the supervisor, the plugins, the launcher
//     until the init stage moves it into the guest's cgroups. The guest
//     itself is not counted (a boot without the cgroup stage is: its
//     guest never leaves that cgroup). On this 2-CPU machine, which a
//     boot keeps busy, it is what a change that saves work moves.
//   - stop: `subhost stop` until the host is clean: no mount under HOME,
//     no loop device backed by the image, no netns NAME, no state
//     directory and no supervisor process (also: until the command
//     returned).
//
// The report gives median, minimum and maximum of each, the ratio of the
// median boot to the median floor (target: under 2) and the supervisor's
// median VmRSS (target: under 15 MB), and with a before build or a twin
// the difference of the median boots, and the median of the rounds'
// paired differences (each round's two boots share the machine's load of
// the moment), with its middle half; the same for the CPU time.
//
// -many N replaces the rounds: N subhosts, each with its own home and a
// sparse copy of the image and its own MAC on the bridge, are launched
// with `run --detach` all at once; one poller looks for every guest's
// marker. It reports how many came up, when the last one did, and the
// median, fastest and slowest time from the common launch to each one's
// marker and to its command's return; then it stops them all at once and
// reports when every stop returned and when the host was clean. With
// many at once, the kernel tears netns and veth pairs down in the
// background for a while after: let the load average fall below 1
// before such a run, and before comparing two.
//
// Everything the benchmark makes is removed on exit, also on
// SIGINT/SIGTERM and when its output pipe closes early, and it checks
// that nothing of its own is left behind.
package main
