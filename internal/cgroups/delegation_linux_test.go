package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/testunit"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// FindDelegation names the cgroup only of a process systemd started, in
// a service's own cgroup (the same in name=systemd on hybrid hosts),
// marked delegated; each other case says why not. The cgroup2 tree and
// name=systemd are directories here (trusted.* attributes need root).
func TestFindDelegation(t *testing.T) {
	stagetest.RequireRoot(t)
	v2, sd := t.TempDir(), t.TempDir()
	info := "30 1 0:26 / " + v2 + " rw - cgroup2 cgroup2 rw\n" +
		"31 1 0:27 / " + sd + " rw - cgroup cgroup rw,name=systemd\n"
	unit := func(path string, attrs ...string) string {
		if err := os.MkdirAll(filepath.Join(v2, path), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(attrs); i += 2 {
			if err := unix.Setxattr(filepath.Join(v2, path), attrs[i], []byte(attrs[i+1]), 0); err != nil {
				t.Fatal(err)
			}
		}
		return path
	}
	systemd := map[string]string{"INVOCATION_ID": "0123abcd"}
	for _, c := range []struct {
		what, cgroup string
		env          map[string]string
		want, why    string
	}{
		{"not started by systemd", "0::" + unit("/a.slice/a.service", "trusted.delegate", "1"), nil, "", "INVOCATION_ID"},
		{"delegated", "0::/a.slice/a.service", systemd, "/a.slice/a.service", ""},
		{"only NOTIFY_SOCKET", "0::/a.slice/a.service", map[string]string{"NOTIFY_SOCKET": "/run/x"}, "/a.slice/a.service", ""},
		{"hybrid, name=systemd the same", "1:name=systemd:/a.slice/a.service\n0::/a.slice/a.service", systemd, "/a.slice/a.service", ""},
		{"user.delegate", "0::" + unit("/u.service", "user.delegate", "1"), systemd, "/u.service", ""},
		{"root cgroup", "0::/", systemd, "", "not a service's"},
		{"below a service", "0::" + unit("/a.slice/a.service/payload"), systemd, "", "not a service's"},
		{"a scope", "0::" + unit("/s.scope", "trusted.delegate", "1"), systemd, "", "not a service's"},
		{"hybrid, name=systemd elsewhere", "1:name=systemd:/\n0::/a.slice/a.service", systemd, "", "name=systemd"},
		{"no mark", "0::" + unit("/a.slice/b.service"), systemd, "", "not marked delegated"},
		{"marked not delegated", "0::" + unit("/c.service", "trusted.delegate", "0", "user.delegate", "1"), systemd, "", "not marked delegated"},
		{"v1 only", "4:memory:/a.service", systemd, "", "no cgroup2"},
	} {
		fakeHost(t, c.cgroup+"\n", info)
		if c.what == "v1 only" {
			fakeHost(t, c.cgroup+"\n", "32 1 0:28 / "+sd+" rw - cgroup cgroup rw,memory\n")
		}
		got, why := FindDelegation(func(k string) string { return c.env[k] })
		if got != c.want || !strings.Contains(why, c.why) || (c.want != "") != (why == "") {
			t.Errorf("%s: FindDelegation = %q, %q; want %q, why with %q", c.what, got, why, c.want, c.why)
		}
	}
}

// TestSetupBelowDelegatedUnit: with a delegated unit's cgroup as the
// parent, Setup makes the guest's cgroup2 and name=systemd cgroups (and
// the device program) below it, the v1 controller hierarchies' at their
// fixed place, and clears a stale cgroup of the name at the fixed place;
// Apply and Remove go by the record; a parent that is not delegated is
// refused before anything is made.
func TestSetupBelowDelegatedUnit(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	u := testunit.New(t, "subhost@dcg.service", true)
	name := testName(t)

	// A previous boot's, outside the service: made afresh below the unit.
	if _, err := Setup(name, "", Defaults(), nil); err != nil {
		t.Fatal(err)
	}
	p, err := Setup(name, u.Path, Defaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	fixed, _ := Paths(name)
	for _, c := range p.Cgroups {
		var want string
		switch c.Hierarchy {
		case "cgroup2":
			want = filepath.Join(u.V2, Dir, name)
		case "name=systemd":
			want = filepath.Join(u.Systemd, Dir, name)
		default:
			want = c.Dir
			if !slices.Contains(fixed, c.Dir) {
				t.Errorf("%s: %s is not at the fixed place", c.Hierarchy, c.Dir)
			}
		}
		if c.Dir != want || c.Guest != filepath.Join(want, Guest) {
			t.Errorf("%s: cgroups %s and %s, want %s and its %s", c.Hierarchy, c.Dir, c.Guest, want, Guest)
		}
		if _, err := os.Stat(c.Guest); err != nil {
			t.Errorf("%s: %v", c.Hierarchy, err)
		}
	}
	if !slices.ContainsFunc(p.Cgroups, func(c sdk.Cgroup) bool { return c.Hierarchy == "cgroup2" }) {
		t.Fatalf("no cgroup2 cgroup in %+v", p.Cgroups)
	}
	if _, err := os.Stat(filepath.Join(strings.TrimSuffix(u.V2, u.Path), Dir, name)); err == nil {
		t.Errorf("the stale cgroup2 cgroup at the fixed place is still there")
	}
	if ok, err := DeviceProgramAttached(filepath.Join(u.V2, Dir, name)); !ok || !slices.Contains(p.DevicePolicy, PolicyV2BPF) {
		t.Errorf("device program below the unit: attached %v (%v), policies %v", ok, err, p.DevicePolicy)
	}

	// `subhost set` goes by the record.
	var l Limits
	if _, err := l.Set("PIDS_MAX", "77"); err != nil {
		t.Fatal(err)
	}
	if err := Apply(name, p.Cgroups, l); err != nil {
		t.Fatal(err)
	}
	if got := ReadInForce(p.Cgroups).PidsMax; got == nil || *got != 77 {
		t.Errorf("PIDS_MAX after Apply: %v, want 77", got)
	}

	// `subhost stop` from a shell knows no parent: the record suffices.
	if err := Remove(name, "", p.Cgroups); err != nil {
		t.Fatal(err)
	}
	if left := u.Left(""); len(left) > 0 {
		t.Errorf("after Remove by the record: %q", left)
	}
	// And the supervisor's Down, with the parent and no record.
	if _, err := Setup(name, u.Path, Defaults(), nil); err != nil {
		t.Fatal(err)
	}
	if err := Remove(name, u.Path, nil); err != nil {
		t.Fatal(err)
	}
	if left := u.Left(""); len(left) > 0 {
		t.Errorf("after Remove by the parent: %q", left)
	}

	plain := testunit.New(t, "subhost@plain.service", false)
	if _, err := Setup(name, plain.Path, Defaults(), nil); err == nil || !strings.Contains(err.Error(), "not delegated") {
		t.Errorf("Setup below a unit that is not delegated: %v", err)
	}
	if _, err := Setup(name, "/../x.service", Defaults(), nil); err == nil || !strings.Contains(err.Error(), "clean absolute") {
		t.Errorf("Setup below %q: %v", "/../x.service", err)
	}
	if left, _ := Paths(name); len(left) > 0 || len(plain.Left("")) > 0 {
		t.Errorf("a refused Setup made %q %q", left, plain.Left(""))
	}
}

// TestCheckHostBelowUnit: below a delegated unit's cgroup, a cgroup v2
// limit needs its controller among those delegated to the unit (its
// cgroup.controllers), not the root's; the error says so. The cgroup2
// tree is a directory here.
func TestCheckHostBelowUnit(t *testing.T) {
	stagetest.RequireRoot(t) // trusted.* attributes
	v2 := t.TempDir()
	unit := filepath.Join(v2, "system.slice", "subhost@x.service")
	if err := os.MkdirAll(unit, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(unit, "trusted.delegate", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(v2, "cgroup.controllers"), "cpu io memory pids")
	writeTestFile(t, filepath.Join(unit, "cgroup.controllers"), "pids")
	fakeHost(t, "0::/system.slice/subhost@x.service/supervisor\n", "30 1 0:26 / "+v2+" rw - cgroup2 cgroup2 rw\n")
	var l Limits
	if _, err := l.Set("MEMORY_MAX", "1G"); err != nil {
		t.Fatal(err)
	}
	if err := CheckHost("", l); err != nil {
		t.Errorf("at the fixed place (the root offers memory): %v", err)
	}
	err := CheckHost("/system.slice/subhost@x.service", l)
	var ve *VarError
	if !errors.As(err, &ve) || ve.Var != "MEMORY_MAX" || !strings.Contains(err.Error(), "not among those delegated to "+unit) {
		t.Errorf("below a unit delegated only pids: %v", err)
	}
	if err := CheckHost("/system.slice/subhost@x.service", Defaults()); err != nil {
		t.Errorf("PIDS_MAX below a unit delegated pids: %v", err)
	}
}
