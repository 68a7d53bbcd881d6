package sdk

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// The boot record's fields as a stage declares them in its RecordUse;
// each names a group of BootRecord fields that one stage sets together.
const (
	// FieldRoot is Root and RootUserns.
	FieldRoot = "root"
	// FieldDevices is Devices.
	FieldDevices = "devices"
	// FieldNetns is Netns.
	FieldNetns = "netns"
	// FieldInterfaces is Interfaces.
	FieldInterfaces = "interfaces"
	// FieldHostname is Hostname.
	FieldHostname = "hostname"
	// FieldGuest is GuestPID, GuestStartTime and GuestStopTimeoutMS.
	FieldGuest = "guest"
	// FieldCgroups is Cgroups and DevicePolicy.
	FieldCgroups = "cgroups"
	// FieldUserns is Userns, UsernsBase and UsernsSize.
	FieldUserns = "userns"
	// FieldExtra is Extra.
	FieldExtra = "extra"
)

// RecordFields are all the boot record's fields, in the record's order.
var RecordFields = []string{FieldRoot, FieldDevices, FieldNetns, FieldInterfaces, FieldHostname, FieldGuest, FieldCgroups, FieldUserns, FieldExtra}

// RecordUse declares which fields of the boot record a stage's Up reads
// (from the stages before it) and which it may set. The runner runs the
// Ups of stages that do not depend on each other at the same time: a
// stage's Up starts once every stage before it in the pipeline that sets
// a field it reads is up, and gets the record with only the fields it
// reads. A stage without a RecordUse (Description.Record nil) reads and
// may set every field: it waits for every stage before it, and every
// stage after it waits for it, as in a pipeline run one stage at a time.
// The result is the same either way; only the time differs.
//
// Only the record is covered. A stage whose Up needs something an earlier
// stage makes that the record does not name (a file, a process) must not
// declare a RecordUse.
type RecordUse struct {
	Reads  []string `json:"reads"`
	Writes []string `json:"writes"`
}

// Check says what is wrong with a declaration: a field name the record
// does not have.
func (u *RecordUse) Check() error {
	if u == nil {
		return nil
	}
	for _, f := range append(slices.Clip(u.Reads), u.Writes...) {
		if !slices.Contains(RecordFields, f) {
			return fmt.Errorf("record use names %q, which is not a boot-record field (%s)", f, strings.Join(RecordFields, ", "))
		}
	}
	return nil
}

// MayRead reports whether a stage with use u reads field f; an
// undeclared use reads every field.
func (u *RecordUse) MayRead(f string) bool {
	return u == nil || slices.Contains(u.Reads, f)
}

// MayWrite reports whether a stage with use u may set field f; an
// undeclared use may set every field.
func (u *RecordUse) MayWrite(f string) bool {
	return u == nil || slices.Contains(u.Writes, f)
}

// DependsOn reports whether a stage with use u must wait for an earlier
// stage with use earlier: when it reads a field the earlier one may set,
// or either is undeclared.
func (u *RecordUse) DependsOn(earlier *RecordUse) bool {
	if u == nil || earlier == nil {
		return true
	}
	for _, f := range u.Reads {
		if slices.Contains(earlier.Writes, f) {
			return true
		}
	}
	return false
}

// Fields are the fields set in r, in RecordFields' order.
func (r BootRecord) Fields() []string {
	var out []string
	for _, f := range RecordFields {
		if !r.Only([]string{f}).isEmpty() {
			out = append(out, f)
		}
	}
	return out
}

// Only is r with just the given fields; the others are empty.
func (r BootRecord) Only(fields []string) BootRecord {
	var out BootRecord
	for _, f := range fields {
		switch f {
		case FieldRoot:
			out.Root, out.RootUserns = r.Root, r.RootUserns
		case FieldDevices:
			out.Devices = slices.Clone(r.Devices)
		case FieldNetns:
			out.Netns = r.Netns
		case FieldInterfaces:
			out.Interfaces = slices.Clone(r.Interfaces)
		case FieldHostname:
			out.Hostname = r.Hostname
		case FieldGuest:
			out.GuestPID, out.GuestStartTime, out.GuestStopTimeoutMS = r.GuestPID, r.GuestStartTime, r.GuestStopTimeoutMS
		case FieldCgroups:
			out.Cgroups, out.DevicePolicy = slices.Clone(r.Cgroups), slices.Clone(r.DevicePolicy)
		case FieldUserns:
			out.Userns, out.UsernsBase, out.UsernsSize = r.Userns, r.UsernsBase, r.UsernsSize
		case FieldExtra:
			out.Extra = maps.Clone(r.Extra)
		}
	}
	return out
}

func (r BootRecord) isEmpty() bool {
	return r.Root == "" && r.RootUserns == "" && len(r.Devices) == 0 && r.Netns == "" &&
		len(r.Interfaces) == 0 && r.Hostname == "" && r.GuestPID == 0 && r.GuestStartTime == 0 && r.GuestStopTimeoutMS == 0 &&
		len(r.Cgroups) == 0 && len(r.DevicePolicy) == 0 && r.Userns == "" && r.UsernsBase == 0 &&
		r.UsernsSize == 0 && len(r.Extra) == 0
}

// Undeclared returns the fields that r sets and u does not declare it
// may set: a stage's result that sets one breaks its declaration.
func (u *RecordUse) Undeclared(r BootRecord) []string {
	var out []string
	for _, f := range r.Fields() {
		if !u.MayWrite(f) {
			out = append(out, f)
		}
	}
	return out
}
