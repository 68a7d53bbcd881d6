package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/subhost/subhost/sdk"
)

func cgroupsExist(cgs []sdk.Cgroup) bool {
	for _, c := range cgs {
		if _, err := os.Stat(c.Dir); err != nil {
			return false
		}
	}
	return true
}

// writeResources prints a subhost's limits and usage for status, e.g.
//
//	memory   12.3M (peak 40.1M) of 64M, 1 OOM kill
//	pids     7 of 40
//	cpu      1.52 s used, limit 0.5 CPU, weight 200
func writeResources(w io.Writer, r report) {
	if r.Limits == nil || r.Usage == nil {
		return
	}
	l, u := r.Limits, r.Usage
	if u.MemoryBytes != nil || l.MemoryMax != nil {
		line := "  memory   " + bytesOr(u.MemoryBytes, "?")
		if u.MemoryPeak != nil {
			line += " (peak " + human(*u.MemoryPeak) + ")"
		}
		line += " of " + bytesOr(l.MemoryMax, "no limit")
		if l.MemoryHigh != nil {
			line += ", high " + human(*l.MemoryHigh)
		}
		if l.MemorySwapMax != nil {
			line += ", swap " + human(*l.MemorySwapMax)
		}
		if u.OOMKills != nil {
			line += fmt.Sprintf(", %d OOM kill%s", *u.OOMKills, plural(*u.OOMKills))
		}
		fmt.Fprintln(w, line)
	}
	if u.Pids != nil || l.PidsMax != nil {
		fmt.Fprintf(w, "  pids     %s of %s\n", intOr(u.Pids, "?"), intOr(l.PidsMax, "no limit"))
	}
	var cpu []string
	if u.CPUSeconds != nil {
		cpu = append(cpu, fmt.Sprintf("%.2f s used", *u.CPUSeconds))
	}
	if l.CPUMax != nil {
		cpu = append(cpu, "limit "+strconv.FormatFloat(*l.CPUMax, 'f', -1, 64)+" CPU")
	}
	if l.CPUWeight != nil {
		cpu = append(cpu, fmt.Sprintf("weight %d", *l.CPUWeight))
	}
	if l.CPUSet != "" {
		cpu = append(cpu, "cpus "+l.CPUSet)
	}
	if len(cpu) > 0 {
		fmt.Fprintf(w, "  cpu      %s\n", strings.Join(cpu, ", "))
	}
	if u.IOReadBytes != nil || l.IOWeight != nil {
		line := "  io      "
		if u.IOReadBytes != nil && u.IOWriteBytes != nil {
			line += fmt.Sprintf(" %s read, %s written", human(*u.IOReadBytes), human(*u.IOWriteBytes))
		}
		if l.IOWeight != nil {
			line += fmt.Sprintf(" weight %d", *l.IOWeight)
		}
		fmt.Fprintln(w, line)
	}
}

// memoryColumn is list's MEMORY: use, and the limit when there is one.
func memoryColumn(r report) string {
	if r.Usage == nil || r.Usage.MemoryBytes == nil {
		return "-"
	}
	s := human(*r.Usage.MemoryBytes)
	if r.Limits != nil && r.Limits.MemoryMax != nil {
		s += "/" + human(*r.Limits.MemoryMax)
	}
	return s
}

func bytesOr(p *int64, none string) string {
	if p == nil {
		return none
	}
	return human(*p)
}

func intOr(p *int64, none string) string {
	if p == nil {
		return none
	}
	return strconv.FormatInt(*p, 10)
}

func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// human spells bytes with a binary suffix, as the config takes them.
func human(n int64) string {
	const units = "KMGT"
	if n < 1024 {
		return strconv.FormatInt(n, 10)
	}
	f, i := float64(n)/1024, 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return strings.TrimSuffix(strconv.FormatFloat(f, 'f', 1, 64), ".0") + string(units[i])
}
