package cgroups

import (
	"slices"
	"testing"

	"github.com/subhost/subhost/sdk"
)

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		disks []sdk.Device
		want  []string
	}{
		{"none", nil, nil},
		{"read-write and read-only", []sdk.Device{{GuestName: "vda", Major: 7, Minor: 3}, {GuestName: "vda1", Major: 259, Minor: 1, ReadOnly: true}},
			[]string{"b 7:3 rw", "b 259:1 r"}},
		{"one device twice, read-only first", []sdk.Device{{GuestName: "a", Major: 7, Minor: 1, ReadOnly: true}, {GuestName: "b", Major: 7, Minor: 1}},
			[]string{"b 7:1 rw"}},
		{"one device twice, read-only both", []sdk.Device{{GuestName: "a", Major: 7, Minor: 1, ReadOnly: true}, {GuestName: "b", Major: 7, Minor: 1, ReadOnly: true}},
			[]string{"b 7:1 r"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Rules(tc.disks)
			if want := append(slices.Clone(Standard), tc.want...); !slices.Equal(got, want) {
				t.Errorf("Rules = %q, want %q", got, want)
			}
		})
	}
}

// TestStandard pins what the allow-list must and must not hold.
func TestStandard(t *testing.T) {
	for _, r := range []string{"c 1:3 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm", "c 10:229 rwm"} {
		if !slices.Contains(Standard, r) {
			t.Errorf("Standard lacks %q", r)
		}
	}
	for _, r := range Standard {
		if r[0] != 'c' {
			t.Errorf("Standard holds %q: block devices come from the boot record only", r)
		}
		if r == "c 5:1 rwm" {
			t.Errorf("Standard holds the host's console %q", r)
		}
	}
}

func TestParseCgroupFile(t *testing.T) {
	ms, err := parseCgroupFile("12:cpu,cpuacct:/\n5:devices:/system.slice/x.service\n1:name=systemd:/user.slice\n0::/init.scope\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 {
		t.Fatalf("got %d lines: %+v", len(ms), ms)
	}
	for _, tc := range []struct {
		m             membership
		fstype, super string
		match, v2     bool
	}{
		{ms[0], "cgroup", "rw,cpu,cpuacct", true, false},
		{ms[0], "cgroup", "rw,cpu", false, false},
		{ms[0], "cgroup2", "rw", false, false},
		{ms[1], "cgroup", "rw,nosuid,devices", true, false},
		{ms[1], "cgroup", "rw,freezer", false, false},
		{ms[2], "cgroup", "rw,xattr,name=systemd", true, false},
		{ms[3], "cgroup2", "rw,nsdelegate", true, true},
		{ms[3], "cgroup", "rw,devices", false, true},
	} {
		if got := tc.m.matches(tc.fstype, tc.super); got != tc.match {
			t.Errorf("%s matches %s %s = %v", tc.m.name(), tc.fstype, tc.super, got)
		}
		if tc.m.v2() != tc.v2 {
			t.Errorf("%s: v2 %v", tc.m.name(), tc.m.v2())
		}
	}
	if !(hierarchy{membership: ms[1]}).devices() || (hierarchy{membership: ms[3]}).devices() {
		t.Error("devices() is wrong")
	}

	for _, bad := range []string{"garbage", "5:devices", "5:devices:relative", ":devices:/"} {
		if _, err := parseCgroupFile(bad); err == nil {
			t.Errorf("parseCgroupFile(%q) accepted it", bad)
		}
	}
}

// TestHostMounted: the devices MOUNTS names, and the whole disks they
// are partitions of, become read-only; the others stay as they were.
func TestHostMounted(t *testing.T) {
	disks := []sdk.Device{
		{GuestName: "vda", ReadOnly: true}, {GuestName: "vda1", ReadOnly: true},
		{GuestName: "vdb"}, {GuestName: "vdb1"}, {GuestName: "vdb2"},
		{GuestName: "vdc"}, {GuestName: "vdd"},
	}
	got := HostMounted(disks, []string{"vdb1:/srv/data", "vdc:/srv/ref:ro"})
	var ro []string
	for _, d := range got {
		if d.ReadOnly {
			ro = append(ro, d.GuestName)
		}
	}
	if want := []string{"vda", "vda1", "vdb", "vdb1", "vdc"}; !slices.Equal(ro, want) {
		t.Errorf("read-only: %v, want %v", ro, want)
	}
	if disks[2].ReadOnly {
		t.Error("HostMounted changed its argument")
	}
}
