package main

import (
	"context"
	"errors"
	"os"
	"slices"
	"sort"

	"github.com/subhost/subhost/internal/cgroups"
	"github.com/subhost/subhost/internal/version"
	"github.com/subhost/subhost/sdk"
)

type stage struct{}

var (
	_ sdk.Stage   = (*stage)(nil)
	_ sdk.Updater = (*stage)(nil)
)

func (*stage) Describe() sdk.Description {
	return sdk.Description{
		Name:    "cgroup",
		Version: version.Version,
		Summary: "the guest's cgroups: resource limits (MEMORY_MAX, PIDS_MAX, CPU_MAX...) and the device policy, on cgroup v1 and v2",
		Record:  &sdk.RecordUse{Reads: []string{sdk.FieldDevices, sdk.FieldUserns}, Writes: []string{sdk.FieldCgroups}},
		Vars: []sdk.ConfigVar{
			{Name: "MEMORY_MAX", Doc: "hard memory limit, tmpfs and page cache included; K, M, G, T suffixes, or max", Live: true},
			{Name: "MEMORY_HIGH", Doc: "memory throttle point (cgroup v1: the soft limit)", Live: true},
			{Name: "MEMORY_SWAP_MAX", Doc: "swap the guest may use (cgroup v1: MEMORY_MAX is then required)", Live: true},
			{Name: "PIDS_MAX", Default: "16384", Doc: "processes and threads; max for none", Live: true},
			{Name: "CPU_MAX", Doc: "CPUs as a decimal, e.g. 0.5 or 1.5 (a quota over 100 ms)", Live: true},
			{Name: "CPU_WEIGHT", Doc: "relative CPU share, 1-10000 (100 is the default)", Live: true},
			{Name: "CPUSET_CPUS", Doc: "the CPUs the guest runs on, e.g. 0-3,6", Live: true},
			{Name: "IO_WEIGHT", Doc: "relative I/O share, 1-10000 (needs io.weight, blkio.weight or blkio.bfq.weight)", Live: true},
			{Name: "DEVICE_POLICY", Doc: "none: boot without a device policy (unsafe: the guest can open any host device)"},
		},
	}
}

// limits reads and checks the config and the host: everything Up would
// refuse, without changing anything.
func limits(req *sdk.Request) (cgroups.Limits, error) {
	l, err := configLimits(req)
	if err != nil {
		return l, err
	}
	return l, hostError(req, cgroups.CheckHost(req.CgroupParent, l))
}

// configLimits reads and checks the config alone.
func configLimits(req *sdk.Request) (cgroups.Limits, error) {
	if len(req.Params) > 0 {
		for name := range req.Params {
			return cgroups.Limits{}, sdk.Invalidf("unknown parameter %q (the cgroup stage takes its settings from the config: %v)", name, cgroups.Vars)
		}
	}
	if err := sdk.ValidName(req.Subhost.Name); err != nil {
		return cgroups.Limits{}, err
	}
	return cgroups.FromConfig(req.Subhost)
}

// hostError says what of the config this host cannot apply (a limit
// with no controller for it), naming where the config sets it.
func hostError(req *sdk.Request, err error) error {
	if err == nil {
		return nil
	}
	var ve *cgroups.VarError
	if errors.As(err, &ve) {
		return sdk.Invalidf("%s: %v", req.Subhost.Where(ve.Var), ve)
	}
	if sdk.KindOf(err) == sdk.KindInvalidConfig {
		return err
	}
	return sdk.Internalf("%w", err)
}

func (*stage) Validate(ctx context.Context, req *sdk.Request) error {
	_, err := limits(req)
	return err
}

// Up makes subhost/NAME (limits, device policy) and subhost/NAME/guest in
// every hierarchy, below the request's cgroup parent where a service
// manager delegated one, and records them. The boot record's devices,
// from the mount stage before it, are the disks the device policy
// allows (those the host mounts for the guest, read-only).
func (*stage) Up(ctx context.Context, req *sdk.Request) (*sdk.Result, error) {
	// Setup checks the host as limits does (Validate did already): not
	// twice here.
	l, err := configLimits(req)
	if err != nil {
		return nil, err
	}
	// The disks the init stage mounts for the guest (MOUNTS) it may only
	// read raw.
	disks := cgroups.HostMounted(req.Record.Devices, req.Subhost.Vars["MOUNTS"].Words)
	p, err := cgroups.Setup(req.Subhost.Name, req.CgroupParent, l, disks)
	var ve *cgroups.VarError
	if errors.As(err, &ve) || sdk.KindOf(err) == sdk.KindInvalidConfig {
		return nil, hostError(req, err)
	}
	if err != nil {
		return nil, sdk.Internalf("the guest's cgroups: %w", err)
	}
	log := sdk.Logger(ctx)
	if len(p.Unplaced) > 0 {
		log.Warn("cgroup hierarchies not mounted here: the guest's cgroup namespace shows their root", "hierarchies", p.Unplaced)
	}
	if l.NoDevicePolicy {
		log.Warn("DEVICE_POLICY=none: the guest can open any host device it has a node for")
	}
	if base := int(req.Record.UsernsBase); req.Record.UsernsSize != 0 {
		// An unprivileged guest (the userns stage's): its root gets
		// its own cgroup.
		if err := cgroups.Delegate(p.Cgroups, base, base); err != nil {
			return nil, sdk.Internalf("delegate the guest's cgroups to its root (host uid %d): %w", base, err)
		}
	}
	log.Debug("cgroups made", "device_policy", p.DevicePolicy, "cgroups", len(p.Cgroups))
	return &sdk.Result{Record: sdk.BootRecord{Cgroups: p.Cgroups, DevicePolicy: p.DevicePolicy}}, nil
}

// Down thaws, kills what is left in and removes the subhost's cgroups in
// every hierarchy, found again from the name (at the fixed place and
// below the request's cgroup parent) and where the boot record says
// they are: it needs no state.
func (*stage) Down(ctx context.Context, req *sdk.Request) error {
	if sdk.ValidName(req.Subhost.Name) != nil {
		return nil // such a name never had a cgroup
	}
	err := cgroups.Remove(req.Subhost.Name, req.CgroupParent, req.Record.Cgroups)
	if errors.Is(err, cgroups.ErrBusy) {
		return sdk.Conflictf("%w", err)
	}
	if err != nil {
		return sdk.Internalf("%w", err)
	}
	return nil
}

// Check reports whether the recorded cgroups exist and hold the limits
// the config gives.
func (*stage) Check(ctx context.Context, req *sdk.Request) error {
	cgs := req.Record.Cgroups
	if len(cgs) == 0 {
		return sdk.NotFoundf("no cgroup is recorded")
	}
	for _, c := range cgs {
		if !exists(c.Dir) || !exists(c.Guest) {
			return sdk.NotFoundf("cgroup %s is gone", c.Guest)
		}
	}
	l, err := cgroups.FromConfig(req.Subhost)
	if err != nil {
		return err
	}
	if d := cgroups.Compare(cgs, l); d != "" {
		return sdk.Conflictf("the limits in force differ from the config: %s", d)
	}
	for _, c := range cgs {
		if c.Hierarchy != "cgroup2" || !slices.Contains(req.Record.DevicePolicy, cgroups.PolicyV2BPF) {
			continue
		}
		if ok, err := cgroups.DeviceProgramAttached(c.Dir); err != nil || !ok {
			return sdk.NotFoundf("no device program on %s (%v)", c.Dir, err)
		}
	}
	return nil
}

// Update applies the cgroup variables among req.Changes to the running
// subhost's cgroups, every one checked before any is written. The
// config file is not changed: it governs the next boot.
func (*stage) Update(ctx context.Context, req *sdk.Request) ([]string, error) {
	var l cgroups.Limits
	var applied []string
	keys := make([]string, 0, len(req.Changes))
	for k := range req.Changes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		known, err := l.Set(k, req.Changes[k])
		if err != nil {
			return nil, sdk.Invalidf("%w", err)
		}
		if !known {
			continue
		}
		if k == "DEVICE_POLICY" {
			return nil, sdk.Invalidf("DEVICE_POLICY cannot change while the subhost runs: edit the config and boot again")
		}
		applied = append(applied, k)
	}
	if len(applied) == 0 {
		return nil, nil
	}
	l.KeepMemoryPair(req.Record.Cgroups)
	if err := cgroups.Apply(req.Subhost.Name, req.Record.Cgroups, l); err != nil {
		if sdk.KindOf(err) != sdk.KindInternal {
			return nil, err
		}
		return nil, sdk.Internalf("%w", err)
	}
	return applied, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
