package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/cgroups"
)

// resources is what `status --json` says of a subhost's cgroups.
type resources struct {
	Limits struct {
		MemoryMax *int64   `json:"memory_max"`
		PidsMax   *int64   `json:"pids_max"`
		CPUMax    *float64 `json:"cpu_max"`
	} `json:"limits"`
	Usage struct {
		MemoryBytes *int64   `json:"memory_bytes"`
		Pids        *int64   `json:"pids"`
		CPUSeconds  *float64 `json:"cpu_seconds"`
		OOMKills    *int64   `json:"oom_kills"`
	} `json:"usage"`
}

func (g *guest) resources() resources {
	g.e.t.Helper()
	o, er, code := g.e.run("status", "--json", g.name)
	var r resources
	if code != 0 {
		g.e.t.Fatalf("status --json: exit %d: %s", code, er)
	}
	if err := json.Unmarshal([]byte(o), &r); err != nil {
		g.e.t.Fatalf("status --json: %v: %s", err, o)
	}
	if r.Usage.MemoryBytes == nil || r.Usage.Pids == nil || r.Usage.CPUSeconds == nil {
		g.e.t.Fatalf("status --json lacks usage: %s", o)
	}
	return r
}

// cgroupDirs lists the host's cgroup directories of subhost name.
func cgroupDirs(name string) []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/subhost/" + name)
	return dirs
}

// TestLimits boots a guest with PIDS_MAX, MEMORY_MAX and CPU_MAX and
// checks, live on this host's cgroups: a fork storm inside is held at
// PIDS_MAX and PID 1 survives it (and powers off cleanly while the guest
// is still at its limit); CPU_MAX=0.5 gives a busy loop half a CPU;
// `subhost set` changes limits in place and refuses bad values; a
// process allocating more than MEMORY_MAX is OOM-killed and counted, and
// filling the guest's tmpfs is held at the limit too; stop leaves no
// cgroup.
func TestLimits(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("lim", nil)
	g.config += "\nPIDS_MAX=40\nMEMORY_MAX=64M\nCPU_MAX=0.5"
	g.home = e.home(g.config)
	g.boot()
	pid1 := e.status(g.name).PID

	// The device policy on the guest's cgroup2 too, wherever one is
	// mounted (the unified tree of this hybrid host).
	for _, d := range cgroupDirs(g.name) {
		if _, err := os.Stat(filepath.Join(d, "cgroup.controllers")); err != nil {
			continue // a v1 hierarchy
		}
		if ok, err := cgroups.DeviceProgramAttached(d); !ok || err != nil {
			t.Errorf("no device program on the guest's cgroup2 %s: %v", d, err)
		}
	}

	r := g.resources()
	if r.Limits.PidsMax == nil || *r.Limits.PidsMax != 40 || r.Limits.MemoryMax == nil || *r.Limits.MemoryMax != 64<<20 ||
		r.Limits.CPUMax == nil || *r.Limits.CPUMax != 0.5 {
		t.Errorf("limits in force: %+v", r.Limits)
	}

	// CPU_MAX=0.5: a busy loop gets half a CPU (±10 %) over 2 s.
	before, start := *r.Usage.CPUSeconds, time.Now()
	g.enter("timeout", "2", "sh", "-c", "while :; do :; done")
	used := (*g.resources().Usage.CPUSeconds - before) / time.Since(start).Seconds()
	if used < 0.4 || used > 0.6 {
		t.Errorf("a busy loop under CPU_MAX=0.5 got %.2f of a CPU, want 0.5±0.1", used)
	}

	// A fork storm: 100 background sleeps, held below PIDS_MAX=40.
	// Counted from the host: at the limit, nothing more starts inside.
	g.enter("sh", "-c", "for i in $(seq 1 100); do sleep 30 & done 2>/dev/null")
	out, _ := exec.Command("pgrep", "-c", "-f", "^sleep 30$").Output()
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || n == 0 || n >= 40 {
		t.Errorf("fork storm under PIDS_MAX=40: %d sleeps running (%q)", n, out)
	}
	if p := g.resources().Usage.Pids; p == nil || *p > 40 {
		t.Errorf("pids in use %v, want at most 40", p)
	}
	if got := e.status(g.name).PID; got != pid1 {
		t.Errorf("PID 1 was %d, is %d after the fork storm", pid1, got)
	}

	// set: in place, checked as the config is.
	if o, er, code := e.run("set", g.name, "PIDS_MAX=60"); code != 0 || !strings.Contains(o, "PIDS_MAX") || !strings.Contains(o, "next boot") {
		t.Errorf("set PIDS_MAX=60: exit %d: %s%s", code, o, er)
	}
	if p := g.resources().Limits.PidsMax; p == nil || *p != 60 {
		t.Errorf("pids limit after set: %v, want 60", p)
	}
	for _, bad := range []struct{ arg, want string }{{"MEMORY_MAX=lots", "MEMORY_MAX"}, {"PIDS_MAX=-1", "PIDS_MAX"}, {"NO_SUCH_THING=1", "NO_SUCH_THING"}, {"junk", "KEY=VALUE"}} {
		if _, er, code := e.run("set", g.name, bad.arg); code != 2 || !strings.Contains(er, bad.want) {
			t.Errorf("set %s: exit %d, want 2 naming %s: %s", bad.arg, code, bad.want, er)
		}
	}
	// A key no stage reads, or one only a boot changes, beside a good
	// one: nothing is changed.
	for _, other := range []string{"NO_SUCH_THING=1", "HOSTIF_PREFIX=x"} { // net-veth reads HOSTIF_PREFIX, at boot
		key, _, _ := strings.Cut(other, "=")
		if _, er, code := e.run("set", g.name, "PIDS_MAX=50", other); code != 2 || !strings.Contains(er, key) || !strings.Contains(er, "nothing was changed") {
			t.Errorf("set PIDS_MAX=50 %s: exit %d, want 2 naming %s: %s", other, code, key, er)
		}
	}
	if p := g.resources().Limits.PidsMax; p == nil || *p != 60 {
		t.Errorf("pids limit after refused sets: %v, want still 60", p)
	}
	exec.Command("pkill", "-f", "^sleep 30$").Run()
	time.Sleep(200 * time.Millisecond)

	// MEMORY_MAX=64M: a 16 MB buffer fits, a 160 MB one is OOM-killed,
	// and the kill is counted.
	if out := g.mustEnter("sh", "-c", "dd if=/dev/zero of=/dev/null bs=16M count=1 2>/dev/null && echo SMALL-FITS"); !strings.Contains(out, "SMALL-FITS") {
		t.Errorf("a 16 MB buffer: %q", out)
	}
	if out, _ := g.enter("sh", "-c", "dd if=/dev/zero of=/dev/null bs=160M count=1 2>/dev/null && echo BIG-FITS"); strings.Contains(out, "BIG-FITS") {
		t.Error("a 160 MB buffer fit under MEMORY_MAX=64M")
	}
	if k := g.resources().Usage.OOMKills; k == nil || *k < 1 {
		t.Errorf("OOM kills counted: %v, want at least 1", k)
	}
	// PID 1 at PIDS_MAX: a storm that stays, then a power off.
	e.run("set", g.name, "PIDS_MAX=40")
	g.enter("sh", "-c", "for i in $(seq 1 100); do sleep 60 & done 2>/dev/null")
	if o, er, code := e.run("stop", "--timeout", "20s", g.name); code != 0 {
		t.Errorf("stop at PIDS_MAX: exit %d: %s%s", code, o, er)
	}
	e.clean(g.name)
	log, _ := os.ReadFile(filepath.Join(logDir, g.name+".log"))
	// reboot(2) ends PID 1 at once: the last line it prints is before.
	if strings.Contains(string(log), "failed to create new OS thread") || strings.Contains(string(log), "fatal error") ||
		!strings.Contains(string(log), "subhost-init: sending SIGTERM to all processes") {
		t.Errorf("subhost-init did not power off cleanly at PIDS_MAX; console:\n%s", tail(string(log), 2000))
	}
	if left := cgroupDirs(g.name); len(left) > 0 {
		t.Errorf("cgroups left after stop: %v", left)
	}
}

// TestMemoryTmpfs: a guest filling its tmpfs is held at MEMORY_MAX (tmpfs
// pages are charged to the guest's cgroup; once no other page can be
// reclaimed, the OOM killer ends guest processes, PID 1 possibly among
// them, which powers the guest off: the host is not touched).
func TestMemoryTmpfs(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("tmpfs", nil)
	g.config += "\nMEMORY_MAX=64M"
	g.home = e.home(g.config)
	g.boot()
	dirs := cgroupDirs(g.name)
	g.enter("sh", "-c", "dd if=/dev/zero of=/run/fill bs=1M count=200 2>/dev/null; echo done")
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "memory.max_usage_in_bytes")); err == nil {
			if n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); n > 64<<20 {
				t.Errorf("peak memory %d over MEMORY_MAX=64M", n)
			}
		}
	}
	e.run("stop", g.name)
	e.clean(g.name)
	if left := cgroupDirs(g.name); len(left) > 0 {
		t.Errorf("cgroups left after stop: %v", left)
	}
}

// TestBadLimit: a bad limit in the config exits 2 naming the file and
// the variable, before anything is made.
func TestBadLimit(t *testing.T) {
	e := newEnv(t)
	for i, bad := range []string{"MEMORY_MAX=lots", "CPU_MAX=0", "PIDS_MAX=-1", "CPUSET_CPUS=0-4095", "IO_WEIGHT=100"} {
		g := e.newGuest(fmt.Sprintf("blim%d", i), nil)
		g.config += "\n" + bad
		g.home = e.home(g.config)
		_, er, code := e.inNet(g.ns, g.runArgs("--detach")...)
		v := strings.SplitN(bad, "=", 2)[0]
		if code != 2 || !strings.Contains(er, v) || !strings.Contains(er, filepath.Join(g.home, "config")) {
			if v == "IO_WEIGHT" && code == 0 {
				e.run("stop", g.name) // a host whose blkio has weights
				continue
			}
			t.Errorf("%s: exit %d, want 2 naming the config and %s: %s", bad, code, v, er)
		}
		if left := cgroupDirs(g.name); len(left) > 0 {
			t.Errorf("%s: cgroups made: %v", bad, left)
		}
		e.clean(g.name)
	}
}

// TestSetMemoryKeepsSwap: cgroup v1 limits memory and memory+swap
// together, so `subhost set` of MEMORY_MAX or MEMORY_SWAP_MAX alone keeps
// the other as it is in force: raising the memory limit above the
// memory+swap one in force works, and lowering it allows no more swap.
func TestSetMemoryKeepsSwap(t *testing.T) {
	e := newEnv(t)
	memory := "/sys/fs/cgroup/memory"
	if _, err := os.Stat(filepath.Join(memory, "memory.memsw.limit_in_bytes")); err != nil {
		t.Skip("no cgroup v1 memory hierarchy with swap accounting here")
	}
	g := e.newGuest("swp", nil)
	g.config += "\nMEMORY_MAX=64M\nMEMORY_SWAP_MAX=0"
	g.home = e.home(g.config)
	g.boot()
	dir := filepath.Join(memory, "subhost", g.name)
	limits := func() (mem, memsw int64) {
		t.Helper()
		read := func(f string) int64 {
			b, err := os.ReadFile(filepath.Join(dir, f))
			n, err2 := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err != nil || err2 != nil {
				t.Fatalf("%s: %v %v", f, err, err2)
			}
			return n
		}
		return read("memory.limit_in_bytes"), read("memory.memsw.limit_in_bytes")
	}
	for _, step := range []struct {
		set          string
		mem, memswap int64
	}{
		{"MEMORY_MAX=128M", 128 << 20, 128 << 20},     // above the 64M memory+swap in force
		{"MEMORY_SWAP_MAX=32M", 128 << 20, 160 << 20}, // on the memory limit in force
		{"MEMORY_MAX=96M", 96 << 20, 128 << 20},       // keeps 32M of swap
	} {
		if o, er, code := e.run("set", g.name, step.set); code != 0 {
			t.Errorf("set %s: exit %d: %s%s", step.set, code, o, er)
		}
		if mem, memsw := limits(); mem != step.mem || memsw != step.memswap {
			t.Errorf("after set %s: memory %d, memory+swap %d; want %d, %d", step.set, mem, memsw, step.mem, step.memswap)
		}
	}
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}
