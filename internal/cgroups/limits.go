package cgroups

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/subhost/subhost/sdk"
)

// Limits are a subhost's resource limits and device-policy choice, as
// its config sets them. A zero field is not set (nothing is written);
// Unlimited is "max".
type Limits struct {
	MemoryMax     int64 // bytes
	MemoryHigh    int64 // bytes
	MemorySwapMax int64 // bytes of swap (0 is a valid limit: see given)
	PidsMax       int64
	CPUQuota      int64 // microseconds per CPUPeriod
	CPUWeight     int64 // 1..10000, cgroup v2's scale
	CPUSet        string
	IOWeight      int64 // 1..10000, cgroup v2's scale
	// NoDevicePolicy is DEVICE_POLICY=none: boot without one (unsafe).
	NoDevicePolicy bool

	// given are the variables set explicitly (PIDS_MAX has a default,
	// MEMORY_SWAP_MAX=0 is a limit): a limit given explicitly that the
	// host cannot apply is an error, a default is skipped.
	given map[string]bool
}

const (
	// Unlimited is "max".
	Unlimited = -1
	// DefaultPidsMax is systemd-nspawn's TasksMax default.
	DefaultPidsMax = 16384
	// CPUPeriod is the CFS period CPU_MAX's quota is over, in µs.
	CPUPeriod = 100000
	maxPids   = 4194304 // the kernel's PID_MAX_LIMIT
)

// Vars are the config variables the cgroup stage reads.
var Vars = []string{"MEMORY_MAX", "MEMORY_HIGH", "MEMORY_SWAP_MAX", "PIDS_MAX", "CPU_MAX", "CPU_WEIGHT", "CPUSET_CPUS", "IO_WEIGHT", "DEVICE_POLICY"}

// Defaults are the limits of a config that sets none.
func Defaults() Limits { return Limits{PidsMax: DefaultPidsMax} }

// Given reports whether the variable was set explicitly.
func (l Limits) Given(name string) bool { return l.given[name] }

// FromConfig reads the limits from a subhost's config variables. An error
// is one line naming where the variable was set, the variable and what
// is wrong with it, of kind invalid config.
func FromConfig(sub sdk.Subhost) (Limits, error) {
	l := Defaults()
	for _, name := range Vars {
		v, ok := sub.Lookup(name)
		if !ok {
			continue
		}
		if v.IsArray && len(v.Words) != 1 {
			return l, sdk.Invalidf("%s: %s: want one value, not an array", sub.Where(name), name)
		}
		value := ""
		if len(v.Words) > 0 {
			value = v.Words[0]
		}
		if _, err := l.Set(name, value); err != nil {
			return l, sdk.Invalidf("%s: %w", sub.Where(name), err)
		}
	}
	return l, nil
}

// Set parses one variable into l: known is false for a variable that is
// not the cgroup stage's. The error names the variable and what is wrong.
func (l *Limits) Set(name, value string) (known bool, err error) {
	if !slices.Contains(Vars, name) {
		return false, nil
	}
	bad := func(want string) error { return fmt.Errorf("%s=%q: want %s", name, value, want) }
	var n int64
	switch name {
	case "MEMORY_MAX", "MEMORY_HIGH", "MEMORY_SWAP_MAX":
		n, err = parseSize(value)
		switch {
		case err != nil:
			return true, bad(`a size such as 512M or 2G (suffixes K, M, G, T), or max`)
		case n == 0 && name != "MEMORY_SWAP_MAX":
			return true, bad(`more than 0 (a size such as 512M or 2G, or max)`)
		}
		switch name {
		case "MEMORY_MAX":
			l.MemoryMax = n
		case "MEMORY_HIGH":
			l.MemoryHigh = n
		default:
			l.MemorySwapMax = n
		}
	case "PIDS_MAX":
		if n, err = parseCount(value, maxPids); err != nil {
			return true, bad(fmt.Sprintf("a number of processes from 1 to %d, or max", maxPids))
		}
		l.PidsMax = n
	case "CPU_MAX":
		if n, err = parseCPUs(value); err != nil {
			return true, bad(`a number of CPUs such as 0.5 or 2 (at least 0.01), or max`)
		}
		l.CPUQuota = n
	case "CPU_WEIGHT", "IO_WEIGHT":
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil || n < 1 || n > 10000 {
			return true, bad("a whole number from 1 to 10000 (100 is the default share)")
		}
		if name == "CPU_WEIGHT" {
			l.CPUWeight = n
		} else {
			l.IOWeight = n
		}
	case "CPUSET_CPUS":
		if _, err := ParseCPUList(value); err != nil {
			return true, bad(`a list of CPUs such as 0-3,6`)
		}
		l.CPUSet = value
	case "DEVICE_POLICY":
		if value != "none" {
			return true, bad(`none (boot without a device policy: unsafe) or no DEVICE_POLICY at all`)
		}
		l.NoDevicePolicy = true
	}
	if l.given == nil {
		l.given = map[string]bool{}
	}
	l.given[name] = true
	return true, nil
}

// parseSize reads bytes with an optional binary K, M, G or T suffix, or
// "max".
func parseSize(s string) (int64, error) {
	if s == "max" {
		return Unlimited, nil
	}
	digits, suffix := s, ""
	if i := len(s) - 1; i > 0 && strings.ContainsRune("KMGTkmgt", rune(s[i])) {
		digits, suffix = s[:i], strings.ToLower(s[i:])
	}
	if !allDigits(digits) {
		return 0, fmt.Errorf("not a size")
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, err
	}
	shift := map[string]uint{"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[suffix]
	if n > math.MaxInt64>>shift>>1 {
		return 0, fmt.Errorf("too large")
	}
	return n << shift, nil
}

func parseCount(s string, limit int64) (int64, error) {
	if s == "max" {
		return Unlimited, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || n > limit {
		return 0, fmt.Errorf("out of range")
	}
	return n, nil
}

// allDigits reports whether s is one or more ASCII digits. The parsers
// here check by hand rather than with package-level regexps, which every
// process linking this package (each plugin) would compile at its start.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseCPUs reads a number of CPUs into a quota in µs per CPUPeriod.
func parseCPUs(s string) (int64, error) {
	if s == "max" {
		return Unlimited, nil
	}
	whole, frac, dotted := strings.Cut(s, ".")
	if !allDigits(whole) || dotted && !allDigits(frac) {
		return 0, fmt.Errorf("not a number")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0.01 || f > 65536 {
		return 0, fmt.Errorf("out of range")
	}
	return int64(math.Round(f * CPUPeriod)), nil
}

// ParseCPUList reads a kernel CPU list ("0-3,6") into its CPU numbers.
func ParseCPUList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("empty CPU list")
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a || b > 8191 || !isDigits(lo) || (isRange && !isDigits(hi)) {
			return nil, fmt.Errorf("bad CPU list %q", s)
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// A setting is one value written to one cgroup file for one variable.
type setting struct {
	Var        string // the config variable
	Controller string // as the hierarchy names it: v1 "blkio", v2 "io"
	File       string
	Value      string
}

// size spells a byte limit as cgroup files take it; v1 takes -1 for
// none, v2 "max".
func size(n int64, v2 bool) string {
	if n == Unlimited {
		if v2 {
			return "max"
		}
		return "-1"
	}
	return strconv.FormatInt(n, 10)
}

// v1Settings are the cgroup v1 writes for l, in an order the kernel
// accepts on a new cgroup (the memory limit before memory+swap). ioFile
// is the blkio weight file the host has ("" when it has none).
func (l Limits) v1Settings(ioFile string) []setting {
	var out []setting
	add := func(v, ctrl, file, value string) { out = append(out, setting{v, ctrl, file, value}) }
	if l.MemoryMax != 0 {
		add("MEMORY_MAX", "memory", "memory.limit_in_bytes", size(l.MemoryMax, false))
	}
	if l.Given("MEMORY_SWAP_MAX") {
		// v1 limits memory and swap together.
		memsw := int64(Unlimited)
		if l.MemoryMax != Unlimited && l.MemorySwapMax != Unlimited && l.MemoryMax != 0 {
			memsw = l.MemoryMax + l.MemorySwapMax
		}
		add("MEMORY_SWAP_MAX", "memory", "memory.memsw.limit_in_bytes", size(memsw, false))
	}
	if l.MemoryHigh != 0 {
		add("MEMORY_HIGH", "memory", "memory.soft_limit_in_bytes", size(l.MemoryHigh, false))
	}
	if l.PidsMax != 0 {
		add("PIDS_MAX", "pids", "pids.max", count(l.PidsMax))
	}
	if l.CPUQuota != 0 {
		add("CPU_MAX", "cpu", "cpu.cfs_period_us", strconv.Itoa(CPUPeriod))
		add("CPU_MAX", "cpu", "cpu.cfs_quota_us", size(l.CPUQuota, false))
	}
	if l.CPUWeight != 0 {
		add("CPU_WEIGHT", "cpu", "cpu.shares", strconv.FormatInt(weightToShares(l.CPUWeight), 10))
	}
	if l.CPUSet != "" {
		add("CPUSET_CPUS", "cpuset", "cpuset.cpus", l.CPUSet)
	}
	if l.IOWeight != 0 {
		w := weightToBlkio(l.IOWeight)
		if ioFile == bfqWeightFile {
			w = weightToBFQ(l.IOWeight)
		}
		add("IO_WEIGHT", "blkio", ioFile, strconv.FormatInt(w, 10))
	}
	return out
}

// v2Settings are the cgroup v2 writes for l.
func (l Limits) v2Settings() []setting {
	var out []setting
	add := func(v, ctrl, file, value string) { out = append(out, setting{v, ctrl, file, value}) }
	if l.MemoryMax != 0 {
		add("MEMORY_MAX", "memory", "memory.max", size(l.MemoryMax, true))
	}
	if l.MemoryHigh != 0 {
		add("MEMORY_HIGH", "memory", "memory.high", size(l.MemoryHigh, true))
	}
	if l.Given("MEMORY_SWAP_MAX") {
		add("MEMORY_SWAP_MAX", "memory", "memory.swap.max", size(l.MemorySwapMax, true))
	}
	if l.PidsMax != 0 {
		add("PIDS_MAX", "pids", "pids.max", count(l.PidsMax))
	}
	if l.CPUQuota != 0 {
		add("CPU_MAX", "cpu", "cpu.max", fmt.Sprintf("%s %d", count(l.CPUQuota), CPUPeriod))
	}
	if l.CPUWeight != 0 {
		add("CPU_WEIGHT", "cpu", "cpu.weight", strconv.FormatInt(l.CPUWeight, 10))
	}
	if l.CPUSet != "" {
		add("CPUSET_CPUS", "cpuset", "cpuset.cpus", l.CPUSet)
	}
	if l.IOWeight != 0 {
		add("IO_WEIGHT", "io", "io.weight", "default "+strconv.FormatInt(l.IOWeight, 10))
	}
	return out
}

func count(n int64) string {
	if n == Unlimited {
		return "max"
	}
	return strconv.FormatInt(n, 10)
}

// weightToShares maps cgroup v2's cpu.weight (1..10000, default 100) to
// v1's cpu.shares (default 1024), as systemd does.
func weightToShares(w int64) int64 { return max(2, min(262144, w*1024/100)) }

// weightToBlkio maps io.weight (1..10000, default 100) to v1's
// blkio.weight (10..1000, default 500), as systemd does.
func weightToBlkio(w int64) int64 { return max(10, min(1000, w*500/100)) }

// The cgroup v1 I/O weight files: CFQ's (gone since Linux 5.0) and BFQ's.
const (
	cfqWeightFile = "blkio.weight"
	bfqWeightFile = "blkio.bfq.weight"
)

// weightToBFQ maps io.weight (1..10000, default 100) to BFQ's weight
// (1..1000, default 100) as systemd does: the same up to the default,
// linear above it.
func weightToBFQ(w int64) int64 {
	if w <= 100 {
		return max(1, w)
	}
	return min(1000, 100+(w-100)*900/9900)
}

// bfqToWeight is weightToBFQ's inverse, for status.
func bfqToWeight(b int64) int64 {
	if b <= 100 {
		return max(1, b)
	}
	return min(10000, 100+(b-100)*9900/900)
}
