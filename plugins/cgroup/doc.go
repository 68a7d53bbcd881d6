// Command cgroup is the subhost stage that owns the guest's cgroups: its
// resource limits and its device policy, on cgroup v1, v2 and hybrid
// hosts (internal/cgroups does the work). It comes before init in both
// built-in pipelines.
//
// Validate reads the config's MEMORY_MAX, MEMORY_HIGH, MEMORY_SWAP_MAX,
// PIDS_MAX (default 16384, "max" for none), CPU_MAX, CPU_WEIGHT,
// CPUSET_CPUS, IO_WEIGHT and DEVICE_POLICY, and checks each against this
// host (a controller or weight file it lacks, CPUs it does not have):
// a bad one is one line naming the config file and line and the
// variable, of kind invalid config (exit 2), before anything exists.
//
// Up makes subhost/NAME at the root of every mounted hierarchy (below the
// unit's cgroup, in the cgroup2 tree and name=systemd, when the request
// carries the cgroup a systemd unit delegated to the supervisor:
// internal/cgroups says when) with the limits and the device policy (v1
// devices rules; a cgroup-device BPF program on the cgroup2 directory
// wherever a cgroup2 tree is mounted; both on hybrid hosts) and
// subhost/NAME/guest below it, and contributes both paths per hierarchy
// (boot record cgroups) and the device policy applied (device_policy) to
// the boot record; init puts the guest's PID 1 in the guest cgroups and
// roots its cgroup namespace there. A host where no device policy can be
// applied fails the boot unless DEVICE_POLICY=none. Up again over
// cgroups that hold processes (a running guest) adopts them; over empty
// ones (a previous boot's) it makes them afresh.
//
// Down, from any state, finds the cgroups again from the name (and the
// boot record's paths, and the request's cgroup parent), thaws a frozen
// guest, kills whatever is left in them and removes them, with
// any cgroups the guest made below its own. Check reports cgroups that
// are gone, a missing device program, and limits in force that differ
// from the config. Update (`subhost set NAME KEY=VALUE...`) changes
// limits in place, every value checked before any is written; the
// config is not changed and governs the next boot. The stage has no
// parameters and no state.
package main
