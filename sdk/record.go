package sdk

import (
	"fmt"
	"maps"
)

// Merge adds a stage's contribution to the boot record. Lists are
// appended; a single-valued field already set to something else, a device
// or interface name given twice, or an Extra key with two values, is a
// Conflict and leaves r unchanged.
func (r *BootRecord) Merge(add BootRecord) error {
	out := r.clone()
	scalars := []struct {
		name string
		dst  *string
		src  string
	}{
		{"root", &out.Root, add.Root},
		{"netns", &out.Netns, add.Netns},
		{"hostname", &out.Hostname, add.Hostname},
		{"userns", &out.Userns, add.Userns},
		{"root_userns", &out.RootUserns, add.RootUserns},
	}
	for _, s := range scalars {
		if s.src == "" {
			continue
		}
		if *s.dst != "" && *s.dst != s.src {
			return Conflictf("boot record: %s already set to %q, a stage sets %q", s.name, *s.dst, s.src)
		}
		*s.dst = s.src
	}
	if add.UsernsSize != 0 {
		if out.UsernsSize != 0 && (out.UsernsBase != add.UsernsBase || out.UsernsSize != add.UsernsSize) {
			return Conflictf("boot record: user namespace ids already %d+%d, a stage sets %d+%d", out.UsernsBase, out.UsernsSize, add.UsernsBase, add.UsernsSize)
		}
		out.UsernsBase, out.UsernsSize = add.UsernsBase, add.UsernsSize
	}
	if add.GuestPID != 0 {
		if out.GuestPID != 0 && out.GuestPID != add.GuestPID {
			return Conflictf("boot record: guest_pid already set to %d, a stage sets %d", out.GuestPID, add.GuestPID)
		}
		out.GuestPID, out.GuestStartTime = add.GuestPID, add.GuestStartTime
	}
	if add.GuestStopTimeoutMS != 0 {
		out.GuestStopTimeoutMS = add.GuestStopTimeoutMS
	}
	for _, d := range add.Devices {
		for _, have := range out.Devices {
			if have.GuestName == d.GuestName && have != d {
				return Conflictf("boot record: device %q given twice", d.GuestName)
			}
		}
		if !contains(out.Devices, d) {
			out.Devices = append(out.Devices, d)
		}
	}
	for _, i := range add.Interfaces {
		for _, have := range out.Interfaces {
			if have.GuestName == i.GuestName && have != i {
				return Conflictf("boot record: interface %q given twice", i.GuestName)
			}
		}
		if !contains(out.Interfaces, i) {
			out.Interfaces = append(out.Interfaces, i)
		}
	}
	for _, c := range add.Cgroups {
		for _, have := range out.Cgroups {
			if have.Hierarchy == c.Hierarchy && have != c {
				return Conflictf("boot record: cgroup of hierarchy %q given twice", c.Hierarchy)
			}
		}
		if !contains(out.Cgroups, c) {
			out.Cgroups = append(out.Cgroups, c)
		}
	}
	for _, d := range add.DevicePolicy {
		if !contains(out.DevicePolicy, d) {
			out.DevicePolicy = append(out.DevicePolicy, d)
		}
	}
	for k, v := range add.Extra {
		if have, ok := out.Extra[k]; ok && have != v {
			return Conflictf("boot record: extra %q already set to %q, a stage sets %q", k, have, v)
		}
		if out.Extra == nil {
			out.Extra = map[string]string{}
		}
		out.Extra[k] = v
	}
	*r = out
	return nil
}

func contains[T comparable](list []T, x T) bool {
	for _, y := range list {
		if y == x {
			return true
		}
	}
	return false
}

func (r *BootRecord) clone() BootRecord {
	out := *r
	out.Devices = append([]Device(nil), r.Devices...)
	out.Interfaces = append([]Interface(nil), r.Interfaces...)
	out.Cgroups = append([]Cgroup(nil), r.Cgroups...)
	out.DevicePolicy = append([]string(nil), r.DevicePolicy...)
	out.Extra = maps.Clone(r.Extra)
	return out
}

// String is a short summary for logs.
func (r BootRecord) String() string {
	return fmt.Sprintf("root=%q netns=%q devices=%d interfaces=%d pid=%d", r.Root, r.Netns, len(r.Devices), len(r.Interfaces), r.GuestPID)
}
