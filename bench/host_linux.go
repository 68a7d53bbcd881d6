package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/subhost/subhost/internal/mountinfo"
)

// mountsUnder lists the mount points at or below dir, deepest last as
// the kernel lists them.
func mountsUnder(dir string) []string {
	mounts, err := mountinfo.Self()
	if err != nil {
		return nil
	}
	dir = filepath.Clean(dir)
	var out []string
	for _, m := range mounts {
		if m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, dir+"/") {
			out = append(out, m.Mountpoint)
		}
	}
	return out
}

// loopsBackedBy lists the loop devices whose backing file is at or below
// path.
func loopsBackedBy(path string) []string {
	paths, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		back := strings.TrimSuffix(strings.TrimSpace(string(data)), " (deleted)")
		if back == path || strings.HasPrefix(back, path+"/") {
			out = append(out, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(p))))
		}
	}
	return out
}

func netnsExists(name string) bool {
	return exists(filepath.Join("/run/netns", name))
}

// linkExists says whether the host's network namespace (the benchmark's)
// has an interface of that name.
func linkExists(name string) bool {
	return exists(filepath.Join("/sys/class/net", name))
}

// procInfo is what /proc/PID/stat and cmdline say about a process.
type procInfo struct {
	pid, ppid int
	cmdline   string
}

// processes lists every process on the host.
func processes() []procInfo {
	ents, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, procInfo{pid: pid, ppid: ppid, cmdline: strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " ")})
	}
	return out
}

// processesMentioning lists the processes whose command line contains s.
func processesMentioning(s string) []procInfo {
	var out []procInfo
	self := os.Getpid()
	for _, p := range processes() {
		if p.pid != self && strings.Contains(p.cmdline, s) {
			out = append(out, p)
		}
	}
	return out
}

// vmRSS is a process's resident set in bytes (VmRSS), 0 when it is gone.
func vmRSS(pid int) int64 { return statusBytes(pid, "VmRSS") }

// statusBytes reads a "kB" field of /proc/PID/status in bytes.
func statusBytes(pid int, field string) int64 {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// treeRSS sums VmRSS over root and its descendants, leaving out the
// subtree of skip (the guest's PID 1); n is how many processes it summed.
func treeRSS(root, skip int) (total int64, n int) {
	children := map[int][]int{}
	for _, p := range processes() {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	stack := []int{root}
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if pid == skip {
			continue
		}
		if rss := vmRSS(pid); rss > 0 {
			total += rss
			n++
		}
		stack = append(stack, children[pid]...)
	}
	return total, n
}

// busy says whether the 1-minute load average is above half the CPUs.
func busy() bool {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return false
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return false
	}
	l, err := strconv.ParseFloat(f[0], 64)
	return err == nil && l > float64(numCPU())/2
}

// loadavg is the first three fields of /proc/loadavg.
func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
