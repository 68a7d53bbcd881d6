package cgroups

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/subhost/subhost/sdk"
)

// InForce are the limits a subhost's cgroups hold, as read back from
// them (absent: no limit). Sizes in bytes, CPUs as a number of CPUs.
type InForce struct {
	MemoryMax     *int64   `json:"memory_max,omitempty"`
	MemoryHigh    *int64   `json:"memory_high,omitempty"`
	MemorySwapMax *int64   `json:"memory_swap_max,omitempty"`
	PidsMax       *int64   `json:"pids_max,omitempty"`
	CPUMax        *float64 `json:"cpu_max,omitempty"`
	CPUWeight     *int64   `json:"cpu_weight,omitempty"`
	CPUSet        string   `json:"cpuset_cpus,omitempty"`
	IOWeight      *int64   `json:"io_weight,omitempty"`
}

// Usage is what a subhost's cgroups have counted: each field only where
// the host gives it.
type Usage struct {
	MemoryBytes  *int64   `json:"memory_bytes,omitempty"`
	MemoryPeak   *int64   `json:"memory_peak_bytes,omitempty"`
	Pids         *int64   `json:"pids,omitempty"`
	CPUSeconds   *float64 `json:"cpu_seconds,omitempty"`
	OOMKills     *int64   `json:"oom_kills,omitempty"`
	IOReadBytes  *int64   `json:"io_read_bytes,omitempty"`
	IOWriteBytes *int64   `json:"io_write_bytes,omitempty"`
}

// noLimit is where v1 reads "-1" back as the largest page-aligned value.
const noLimit = int64(1) << 62

func readInt(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// limitAt reads a byte or count limit: nil for none ("max", -1, or v1's
// huge value).
func limitAt(path string) (*int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return nil, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n >= noLimit {
		return nil, err == nil
	}
	return &n, true
}

// keyed reads "key value" lines (memory.events, memory.oom_control,
// cpu.stat) into a map.
func keyed(path string) map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 {
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				out[f[0]] = n
			}
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// KeepMemoryPair completes a change of MEMORY_MAX or of MEMORY_SWAP_MAX
// alone (subhost set) for a subhost whose memory cgroup is v1, which
// limits memory and memory+swap together: the other keeps its value in
// force. Without it, the kernel refuses a memory limit above the
// memory+swap one in force, one below it allows more swap than was
// set, and MEMORY_SWAP_MAX alone has no memory limit to add to.
func (l *Limits) KeepMemoryPair(cgs []sdk.Cgroup) {
	v1 := slices.ContainsFunc(cgs, func(c sdk.Cgroup) bool {
		return c.Hierarchy != "cgroup2" && slices.Contains(strings.Split(c.Hierarchy, ","), "memory")
	})
	mem, swap := l.Given("MEMORY_MAX"), l.Given("MEMORY_SWAP_MAX")
	if !v1 || mem == swap {
		return
	}
	now := ReadInForce(cgs)
	switch {
	case mem && now.MemorySwapMax != nil:
		l.MemorySwapMax = *now.MemorySwapMax
		l.given["MEMORY_SWAP_MAX"] = true
	case swap && now.MemoryMax != nil:
		l.MemoryMax = *now.MemoryMax
		l.given["MEMORY_MAX"] = true
	}
}

// ReadInForce reads the limits from a boot record's cgroups.
func ReadInForce(cgs []sdk.Cgroup) InForce {
	var l InForce
	for _, c := range cgs {
		d := c.Dir
		at := func(f string) string { return filepath.Join(d, f) }
		if c.Hierarchy == "cgroup2" {
			if v, ok := limitAt(at("memory.max")); ok {
				l.MemoryMax = v
			}
			if v, ok := limitAt(at("memory.high")); ok {
				l.MemoryHigh = v
			}
			if v, ok := limitAt(at("memory.swap.max")); ok {
				l.MemorySwapMax = v
			}
			if v, ok := limitAt(at("pids.max")); ok {
				l.PidsMax = v
			}
			if b, err := os.ReadFile(at("cpu.max")); err == nil {
				f := strings.Fields(string(b))
				if len(f) == 2 && f[0] != "max" {
					q, _ := strconv.ParseFloat(f[0], 64)
					p, _ := strconv.ParseFloat(f[1], 64)
					if p > 0 {
						l.CPUMax = ptr(q / p)
					}
				}
			}
			if v, ok := readInt(at("cpu.weight")); ok && v != 100 {
				l.CPUWeight = ptr(v)
			}
			if b, err := os.ReadFile(at("cpuset.cpus")); err == nil && strings.TrimSpace(string(b)) != "" {
				l.CPUSet = strings.TrimSpace(string(b))
			}
			if b, err := os.ReadFile(at("io.weight")); err == nil {
				if f := strings.Fields(string(b)); len(f) >= 2 && f[0] == "default" {
					if v, err := strconv.ParseInt(f[1], 10, 64); err == nil && v != 100 {
						l.IOWeight = ptr(v)
					}
				}
			}
			continue
		}
		for _, ctrl := range strings.Split(c.Hierarchy, ",") {
			switch ctrl {
			case "memory":
				l.MemoryMax, _ = limitAt(at("memory.limit_in_bytes"))
				l.MemoryHigh, _ = limitAt(at("memory.soft_limit_in_bytes"))
				if sw, ok := limitAt(at("memory.memsw.limit_in_bytes")); ok && sw != nil && l.MemoryMax != nil {
					l.MemorySwapMax = ptr(*sw - *l.MemoryMax)
				}
			case "pids":
				l.PidsMax, _ = limitAt(at("pids.max"))
			case "cpu":
				q, ok1 := readInt(at("cpu.cfs_quota_us"))
				p, ok2 := readInt(at("cpu.cfs_period_us"))
				if ok1 && ok2 && q > 0 && p > 0 {
					l.CPUMax = ptr(float64(q) / float64(p))
				}
				if s, ok := readInt(at("cpu.shares")); ok && s != 1024 {
					// Rounded: weightToShares truncates (33 is 337 shares).
					l.CPUWeight = ptr(max(1, min(10000, (s*100+512)/1024)))
				}
			case "cpuset":
				if b, err := os.ReadFile(at("cpuset.cpus")); err == nil {
					l.CPUSet = strings.TrimSpace(string(b))
				}
			case "blkio":
				// Each at its own default and scale (weightToBlkio,
				// weightToBFQ).
				if v, ok := readInt(at(cfqWeightFile)); ok && v != 500 {
					l.IOWeight = ptr(max(1, v*100/500))
				}
				if v, ok := readInt(at(bfqWeightFile)); ok && v != 100 {
					l.IOWeight = ptr(bfqToWeight(v))
				}
			}
		}
	}
	return l
}

// ReadUsage reads what a boot record's cgroups have counted.
func ReadUsage(cgs []sdk.Cgroup) Usage {
	var u Usage
	for _, c := range cgs {
		d := c.Dir
		at := func(f string) string { return filepath.Join(d, f) }
		if c.Hierarchy == "cgroup2" {
			if v, ok := readInt(at("memory.current")); ok {
				u.MemoryBytes = ptr(v)
			}
			if v, ok := readInt(at("memory.peak")); ok {
				u.MemoryPeak = ptr(v)
			}
			if v, ok := keyed(at("memory.events"))["oom_kill"]; ok {
				u.OOMKills = ptr(v)
			}
			if v, ok := readInt(at("pids.current")); ok {
				u.Pids = ptr(v)
			}
			if v, ok := keyed(at("cpu.stat"))["usage_usec"]; ok && u.CPUSeconds == nil {
				u.CPUSeconds = ptr(float64(v) / 1e6)
			}
			if b, err := os.ReadFile(at("io.stat")); err == nil {
				var r, w int64
				for _, f := range strings.Fields(string(b)) {
					if v, ok := strings.CutPrefix(f, "rbytes="); ok {
						n, _ := strconv.ParseInt(v, 10, 64)
						r += n
					}
					if v, ok := strings.CutPrefix(f, "wbytes="); ok {
						n, _ := strconv.ParseInt(v, 10, 64)
						w += n
					}
				}
				u.IOReadBytes, u.IOWriteBytes = ptr(r), ptr(w)
			}
			continue
		}
		for _, ctrl := range strings.Split(c.Hierarchy, ",") {
			switch ctrl {
			case "memory":
				if v, ok := readInt(at("memory.usage_in_bytes")); ok {
					u.MemoryBytes = ptr(v)
				}
				if v, ok := readInt(at("memory.max_usage_in_bytes")); ok {
					u.MemoryPeak = ptr(v)
				}
				// v1 counts OOM kills in each cgroup alone, not with
				// its children's: the guest's are below.
				var kills int64
				found := false
				walk(d, func(dir string) {
					if v, ok := keyed(filepath.Join(dir, "memory.oom_control"))["oom_kill"]; ok {
						kills += v
						found = true
					}
				})
				if found {
					u.OOMKills = ptr(kills)
				}
			case "pids":
				if v, ok := readInt(at("pids.current")); ok {
					u.Pids = ptr(v)
				}
			case "cpuacct":
				if v, ok := readInt(at("cpuacct.usage")); ok {
					u.CPUSeconds = ptr(float64(v) / 1e9)
				}
			case "blkio":
				b, err := os.ReadFile(at("blkio.throttle.io_service_bytes_recursive"))
				if err != nil {
					continue
				}
				var r, w int64
				for _, line := range strings.Split(string(b), "\n") {
					f := strings.Fields(line)
					if len(f) == 3 {
						n, _ := strconv.ParseInt(f[2], 10, 64)
						switch f[1] {
						case "Read":
							r += n
						case "Write":
							w += n
						}
					}
				}
				u.IOReadBytes, u.IOWriteBytes = ptr(r), ptr(w)
			}
		}
	}
	return u
}

// Compare reports how the limits in cgs differ from l's, one clause per
// variable, "" when they agree.
func Compare(cgs []sdk.Cgroup, l Limits) string {
	f := ReadInForce(cgs)
	var diffs []string
	// Memory limits are page-aligned by v1, so compared in pages (64 KiB
	// on some arm64 and ppc64le hosts).
	page := int64(os.Getpagesize())
	limit := func(name string, want int64, got *int64, unit int64) {
		switch {
		case want == 0:
		case want == Unlimited && got != nil:
			diffs = append(diffs, fmt.Sprintf("%s is %d, want max", name, *got))
		case want > 0 && got == nil:
			diffs = append(diffs, fmt.Sprintf("%s is max, want %d", name, want))
		case want > 0 && *got/unit != want/unit:
			diffs = append(diffs, fmt.Sprintf("%s is %d, want %d", name, *got, want))
		}
	}
	limit("MEMORY_MAX", l.MemoryMax, f.MemoryMax, page)
	limit("MEMORY_HIGH", l.MemoryHigh, f.MemoryHigh, page)
	if anyLimit(cgs, "pids") {
		limit("PIDS_MAX", l.PidsMax, f.PidsMax, 1)
	}
	if l.CPUQuota > 0 && (f.CPUMax == nil || int64(*f.CPUMax*CPUPeriod+0.5) != l.CPUQuota) {
		diffs = append(diffs, fmt.Sprintf("CPU_MAX is %v, want %v", deref(f.CPUMax), float64(l.CPUQuota)/CPUPeriod))
	}
	if l.CPUSet != "" {
		a, _ := ParseCPUList(l.CPUSet)
		b, _ := ParseCPUList(f.CPUSet)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			diffs = append(diffs, fmt.Sprintf("CPUSET_CPUS is %q, want %q", f.CPUSet, l.CPUSet))
		}
	}
	return strings.Join(diffs, "; ")
}

func anyLimit(cgs []sdk.Cgroup, ctrl string) bool {
	for _, c := range cgs {
		if _, err := os.Stat(filepath.Join(c.Dir, ctrl+".max")); err == nil {
			return true
		}
	}
	return false
}

func deref(p *float64) any {
	if p == nil {
		return "max"
	}
	return *p
}
