package cgroups

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/subhost/subhost/sdk"
)

func sub(vars map[string]string) sdk.Subhost {
	s := sdk.Subhost{Name: "x", ConfigFile: "/opt/sub/x/config", Vars: map[string]sdk.Var{}}
	line := 1
	for k, v := range vars {
		s.Vars[k] = sdk.Var{Words: []string{v}, Origin: fmt.Sprintf("/opt/sub/x/config:%d", line)}
		line++
	}
	return s
}

// TestBadValues: every bad value is one line naming the config file and
// line, the variable, and what is wrong, of kind invalid config.
func TestBadValues(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"MEMORY_MAX", "lots", "a size such as 512M"},
		{"MEMORY_MAX", "0", "more than 0"},
		{"MEMORY_MAX", "-1", "a size"},
		{"MEMORY_MAX", "1.5G", "a size"},
		{"MEMORY_MAX", "64MB", "a size"},
		{"MEMORY_MAX", "99999999999T", "a size"},
		{"MEMORY_HIGH", "", "a size"},
		{"MEMORY_SWAP_MAX", "some", "a size"},
		{"PIDS_MAX", "-1", "a number of processes"},
		{"PIDS_MAX", "0", "a number of processes"},
		{"PIDS_MAX", "lots", "a number of processes"},
		{"PIDS_MAX", "5000000", "a number of processes"},
		{"CPU_MAX", "0", "a number of CPUs"},
		{"CPU_MAX", "0.001", "a number of CPUs"},
		{"CPU_MAX", "-1", "a number of CPUs"},
		{"CPU_MAX", "50%", "a number of CPUs"},
		{"CPU_MAX", "1e3", "a number of CPUs"},
		{"CPU_WEIGHT", "0", "from 1 to 10000"},
		{"CPU_WEIGHT", "10001", "from 1 to 10000"},
		{"CPU_WEIGHT", "high", "from 1 to 10000"},
		{"IO_WEIGHT", "0", "from 1 to 10000"},
		{"CPUSET_CPUS", "0-", "a list of CPUs"},
		{"CPUSET_CPUS", "3-1", "a list of CPUs"},
		{"CPUSET_CPUS", "a", "a list of CPUs"},
		{"CPUSET_CPUS", "0,,1", "a list of CPUs"},
		{"CPUSET_CPUS", "+1", "a list of CPUs"},
		{"DEVICE_POLICY", "off", "none"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			_, err := FromConfig(sub(map[string]string{tc.name: tc.value}))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if sdk.KindOf(err) != sdk.KindInvalidConfig || !strings.HasPrefix(msg, "config /opt/sub/x/config:1: "+tc.name+"=") ||
				!strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q (kind %v), want one invalid-config line naming the file, %s and %q", msg, sdk.KindOf(err), tc.name, tc.want)
			}
		})
	}
	arr := sdk.Subhost{Vars: map[string]sdk.Var{"PIDS_MAX": {Words: []string{"1", "2"}, IsArray: true, Origin: "/c:3"}}}
	if _, err := FromConfig(arr); err == nil || !strings.Contains(err.Error(), "PIDS_MAX: want one value") {
		t.Errorf("an array: %v", err)
	}
}

func TestGoodValues(t *testing.T) {
	l, err := FromConfig(sub(map[string]string{"MEMORY_MAX": "64M", "MEMORY_HIGH": "48m", "MEMORY_SWAP_MAX": "0", "PIDS_MAX": "max",
		"CPU_MAX": "1.5", "CPU_WEIGHT": "200", "CPUSET_CPUS": "0-3,6", "IO_WEIGHT": "50", "DEVICE_POLICY": "none"}))
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{MemoryMax: 64 << 20, MemoryHigh: 48 << 20, PidsMax: Unlimited, CPUQuota: 150000, CPUWeight: 200, CPUSet: "0-3,6", IOWeight: 50, NoDevicePolicy: true}
	l.given = nil
	if fmt.Sprint(l) != fmt.Sprint(want) {
		t.Errorf("got %+v\nwant %+v", l, want)
	}
	if d, _ := FromConfig(sdk.Subhost{}); d.PidsMax != DefaultPidsMax || d.Given("PIDS_MAX") {
		t.Errorf("defaults %+v", d)
	}
	if m, _ := FromConfig(sub(map[string]string{"MEMORY_MAX": "2T"})); m.MemoryMax != 2<<40 {
		t.Errorf("2T = %d", m.MemoryMax)
	}
}

func writes(ss []setting) string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "%s:%s=%s\n", s.Controller, s.File, s.Value)
	}
	return b.String()
}

// TestV2Translation: what is written to which file on a cgroup v2 host
// (this build host binds every controller to v1, so the v2 files are
// pinned here rather than written).
func TestV2Translation(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{nil, "pids:pids.max=16384\n"},
		{map[string]string{"MEMORY_MAX": "64M", "MEMORY_HIGH": "48M", "MEMORY_SWAP_MAX": "0", "PIDS_MAX": "40"},
			"memory:memory.max=67108864\nmemory:memory.high=50331648\nmemory:memory.swap.max=0\npids:pids.max=40\n"},
		{map[string]string{"MEMORY_MAX": "max", "MEMORY_SWAP_MAX": "max", "PIDS_MAX": "max"},
			"memory:memory.max=max\nmemory:memory.swap.max=max\npids:pids.max=max\n"},
		{map[string]string{"CPU_MAX": "0.5", "CPU_WEIGHT": "200", "CPUSET_CPUS": "0-1", "IO_WEIGHT": "300"},
			"pids:pids.max=16384\ncpu:cpu.max=50000 100000\ncpu:cpu.weight=200\ncpuset:cpuset.cpus=0-1\nio:io.weight=default 300\n"},
		{map[string]string{"CPU_MAX": "max"}, "pids:pids.max=16384\ncpu:cpu.max=max 100000\n"},
	} {
		l, err := FromConfig(sub(tc.vars))
		if err != nil {
			t.Fatal(err)
		}
		if got := writes(l.v2Settings()); got != tc.want {
			t.Errorf("%v:\n%s\nwant\n%s", tc.vars, got, tc.want)
		}
	}
}

func TestV1Translation(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"MEMORY_MAX": "64M", "MEMORY_SWAP_MAX": "16M", "MEMORY_HIGH": "max", "PIDS_MAX": "max"},
			"memory:memory.limit_in_bytes=67108864\nmemory:memory.memsw.limit_in_bytes=83886080\nmemory:memory.soft_limit_in_bytes=-1\npids:pids.max=max\n"},
		{map[string]string{"CPU_MAX": "0.5", "CPU_WEIGHT": "100", "CPUSET_CPUS": "1", "IO_WEIGHT": "100"},
			"pids:pids.max=16384\ncpu:cpu.cfs_period_us=100000\ncpu:cpu.cfs_quota_us=50000\ncpu:cpu.shares=1024\ncpuset:cpuset.cpus=1\nblkio:blkio.weight=500\n"},
		{map[string]string{"CPU_WEIGHT": "1", "IO_WEIGHT": "10000"},
			"pids:pids.max=16384\ncpu:cpu.shares=10\nblkio:blkio.weight=1000\n"},
	} {
		l, err := FromConfig(sub(tc.vars))
		if err != nil {
			t.Fatal(err)
		}
		if got := writes(l.v1Settings("blkio.weight")); got != tc.want {
			t.Errorf("%v:\n%s\nwant\n%s", tc.vars, got, tc.want)
		}
	}
}

// TestV1TranslationBFQ: on a v1 host whose blkio weights are BFQ's
// (1..1000, default 100), IO_WEIGHT keeps BFQ's default at io.weight's
// and scales linearly above it, as systemd does.
func TestV1TranslationBFQ(t *testing.T) {
	for weight, want := range map[string]string{"1": "1", "100": "100", "50": "50", "10000": "1000", "5050": "550"} {
		l, err := FromConfig(sub(map[string]string{"IO_WEIGHT": weight, "PIDS_MAX": "max"}))
		if err != nil {
			t.Fatal(err)
		}
		if got, w := writes(l.v1Settings(bfqWeightFile)), "pids:pids.max=max\nblkio:blkio.bfq.weight="+want+"\n"; got != w {
			t.Errorf("IO_WEIGHT=%s:\n%s\nwant\n%s", weight, got, w)
		}
	}
	for _, w := range []int64{1, 50, 100, 200, 5050, 10000} {
		if got := bfqToWeight(weightToBFQ(w)); got < w-11 || got > w {
			t.Errorf("IO_WEIGHT=%d reads back as %d", w, got)
		}
	}
}

// TestPlanOnV2Host: on a pure cgroup v2 host the limits go to the
// cgroup2 tree and only the controllers they need are enabled; one the
// tree does not offer is refused naming the variable.
func TestPlanOnV2Host(t *testing.T) {
	mnt := t.TempDir()
	writeTestFile(t, mnt+"/cgroup.controllers", "cpuset cpu io memory pids\n")
	writeTestFile(t, mnt+"/cpuset.cpus.effective", "0-3\n")
	fakeHost(t, "0::/init.scope\n", "30 1 0:26 / "+mnt+" rw - cgroup2 cgroup2 rw\n")
	hs, err := hierarchies()
	if err != nil {
		t.Fatal(err)
	}
	l, _ := FromConfig(sub(map[string]string{"MEMORY_MAX": "1G", "CPU_MAX": "2"}))
	p, err := planFor(hs, l)
	if err != nil {
		t.Fatal(err)
	}
	if got := writes(p.settings["cgroup2"]); got != "memory:memory.max=1073741824\npids:pids.max=16384\ncpu:cpu.max=200000 100000\n" {
		t.Errorf("settings:\n%s", got)
	}
	if fmt.Sprint(p.enable) != "[memory pids cpu]" {
		t.Errorf("enable %v", p.enable)
	}
	l, _ = FromConfig(sub(map[string]string{"CPUSET_CPUS": "2-5"}))
	if _, err := planFor(hs, l); err == nil || !strings.Contains(err.Error(), "CPUSET_CPUS") || !strings.Contains(err.Error(), "no CPU 4") {
		t.Errorf("a cpuset the host lacks: %v", err)
	}
	writeTestFile(t, mnt+"/cgroup.controllers", "hugetlb\n") // the hybrid build host's tree
	l, _ = FromConfig(sub(map[string]string{"MEMORY_MAX": "1G"}))
	if _, err := planFor(hs, l); err == nil || !strings.HasPrefix(err.Error(), "MEMORY_MAX: no memory controller") {
		t.Errorf("no memory controller: %v", err)
	}
	if p, err := planFor(hs, Defaults()); err != nil || len(p.settings) > 0 {
		t.Errorf("the PIDS_MAX default without a pids controller: %+v %v, want skipped", p, err)
	}
}

// TestParsersKeepThePatterns checks parseSize and parseCPUs against the
// regexps they replaced: the same inputs are numbers.
func TestParsersKeepThePatterns(t *testing.T) {
	size := regexp.MustCompile(`^([0-9]+)([KMGTkmgt]?)$`)
	cpus := regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	for _, s := range []string{"", "0", "64", "64M", "48m", "2T", "1k", "1.5", "0.5", "1.", ".5", "M", "64MB", "-1", "1e3", " 1", "1 ", "1..5", "1.5.5", "x", "1G5"} {
		if _, err := parseSize(s); (err == nil) != size.MatchString(s) {
			t.Errorf("parseSize(%q): error %v, pattern %v", s, err, size.MatchString(s))
		}
		_, err := parseCPUs(s)
		if err != nil && strings.Contains(err.Error(), "out of range") {
			err = nil // a number, just not a valid count of CPUs
		}
		if (err == nil) != cpus.MatchString(s) {
			t.Errorf("parseCPUs(%q): error %v, pattern %v", s, err, cpus.MatchString(s))
		}
	}
}
