package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/cgroups"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

func request(name string, vars map[string]string) *sdk.Request {
	sub := sdk.Subhost{Name: name, Home: "/opt/sub/" + name, ConfigFile: "/opt/sub/" + name + "/config", Vars: map[string]sdk.Var{}}
	line := 1
	for k, v := range vars {
		sub.Vars[k] = sdk.Var{Words: []string{v}, Origin: fmt.Sprintf("%s:%d", sub.ConfigFile, line)}
		line++
	}
	return &sdk.Request{Subhost: sub, Stage: "cgroup"}
}

func testName(t *testing.T) string {
	name := fmt.Sprintf("cgstage%d", os.Getpid())
	t.Cleanup(func() {
		if err := cgroups.Remove(name, "", nil); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
	return name
}

// TestValidateBadValues: each bad value is one line naming the config
// file and line and the variable, of kind invalid config (exit 2).
func TestValidateBadValues(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"MEMORY_MAX", "lots"}, {"MEMORY_HIGH", "0"}, {"MEMORY_SWAP_MAX", "x"},
		{"PIDS_MAX", "-1"}, {"PIDS_MAX", "0"}, {"CPU_MAX", "0"}, {"CPU_MAX", "half"},
		{"CPU_WEIGHT", "0"}, {"IO_WEIGHT", "20000"}, {"CPUSET_CPUS", "0-4095"}, {"CPUSET_CPUS", "x"},
		{"DEVICE_POLICY", "off"},
	} {
		err := (&stage{}).Validate(context.Background(), request("x", map[string]string{tc.name: tc.value}))
		if sdk.KindOf(err) != sdk.KindInvalidConfig || !strings.HasPrefix(err.Error(), "config /opt/sub/x/config:1: "+tc.name) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s=%s: %v (kind %v)", tc.name, tc.value, err, sdk.KindOf(err))
		}
	}
	err := (&stage{}).Validate(context.Background(), &sdk.Request{Subhost: sdk.Subhost{Name: "x"}, Params: map[string]string{"memory": "1G"}})
	if sdk.KindOf(err) != sdk.KindInvalidConfig || !strings.Contains(err.Error(), `unknown parameter "memory"`) {
		t.Errorf("a parameter: %v", err)
	}
	if err := (&stage{}).Validate(context.Background(), request("a.b", nil)); sdk.KindOf(err) != sdk.KindInvalidConfig {
		t.Errorf("a name that cannot name a cgroup: %v", err)
	}
}

// TestIOWeightWithoutWeightFile: this build host's v1 blkio has neither
// blkio.weight nor blkio.bfq.weight; IO_WEIGHT is refused there, naming
// the variable.
func TestIOWeightWithoutWeightFile(t *testing.T) {
	if _, err := os.Stat("/sys/fs/cgroup/blkio/blkio.throttle.io_service_bytes"); err != nil {
		t.Skip("no cgroup v1 blkio hierarchy")
	}
	for _, f := range []string{"blkio.weight", "blkio.bfq.weight"} {
		if _, err := os.Stat("/sys/fs/cgroup/blkio/" + f); err == nil {
			t.Skip("this host's blkio has " + f)
		}
	}
	err := (&stage{}).Validate(context.Background(), request("x", map[string]string{"IO_WEIGHT": "200"}))
	if sdk.KindOf(err) != sdk.KindInvalidConfig || !strings.Contains(err.Error(), "config /opt/sub/x/config:1: IO_WEIGHT") || !strings.Contains(err.Error(), "no weight file") {
		t.Errorf("IO_WEIGHT: %v", err)
	}
}

// TestConformance: the SDK's protocol sequence over real RPC, with
// limits; the leak check covers the cgroup directories.
func TestConformance(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	req := request(testName(t), map[string]string{"MEMORY_MAX": "128M", "PIDS_MAX": "100", "CPU_MAX": "1.5", "CPUSET_CPUS": "0"})
	stagetest.Conformance(t, &stage{}, req)
}

// inGuest starts a shell in the guest cgroups running script, and
// returns it (killed at cleanup).
func inGuest(t *testing.T, cgs []sdk.Cgroup, script string) *exec.Cmd {
	t.Helper()
	var join strings.Builder
	for _, c := range cgs {
		fmt.Fprintf(&join, "echo 0 > %s/cgroup.procs || exit 9\n", c.Guest)
	}
	cmd := exec.Command("/bin/sh", "-c", join.String()+script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func hierarchy(cgs []sdk.Cgroup, ctrl string) *sdk.Cgroup {
	for i, c := range cgs {
		if slices.Contains(strings.Split(c.Hierarchy, ","), ctrl) {
			return &cgs[i]
		}
	}
	return nil
}

// TestLimitsHold: Up's limits hold against processes in the guest's
// cgroup (a fork storm at PIDS_MAX, an allocation over MEMORY_MAX, OOM
// kill counted), Check sees a limit changed behind its back, Update
// changes them in place, checked first, and Down kills what is left.
func TestLimitsHold(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	name := testName(t)
	req := request(name, map[string]string{"MEMORY_MAX": "32M", "PIDS_MAX": "20"})
	s := stagetest.Serve(t, &stage{})
	ctx := context.Background()
	res, err := s.Up(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	req.Record = res.Record
	cgs := res.Record.Cgroups
	if len(res.Record.DevicePolicy) == 0 {
		t.Errorf("no device policy recorded: %+v", res.Record)
	}
	pids, mem := hierarchy(cgs, "pids"), hierarchy(cgs, "memory")
	if pids == nil || mem == nil {
		t.Skip("needs cgroup v1 pids and memory hierarchies")
	}

	storm := inGuest(t, cgs, "for i in $(seq 1 60); do sleep 30 & done 2>/dev/null; sleep 30")
	var n int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join(pids.Dir, "pids.current"))
		n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if n >= 20 {
			break
		}
	}
	if n != 20 {
		t.Errorf("a fork storm under PIDS_MAX=20: %d tasks", n)
	}
	storm.Process.Kill()

	// Update: checked, then applied; the unknown key is left out.
	if _, err := sdk.Update(ctx, s, withChanges(req, "PIDS_MAX", "-1")); sdk.KindOf(err) != sdk.KindInvalidConfig || !strings.Contains(err.Error(), "PIDS_MAX") {
		t.Errorf("Update PIDS_MAX=-1: %v", err)
	}
	applied, err := sdk.Update(ctx, s, withChanges(req, "PIDS_MAX", "30", "OTHER", "x"))
	if err != nil || !slices.Equal(applied, []string{"PIDS_MAX"}) {
		t.Errorf("Update: %v %v", applied, err)
	}
	if b, _ := os.ReadFile(filepath.Join(pids.Dir, "pids.max")); strings.TrimSpace(string(b)) != "30" {
		t.Errorf("pids.max after Update: %s", b)
	}
	// Check compares with the config, which still says 20.
	if err := s.Check(ctx, req); sdk.KindOf(err) != sdk.KindConflict || !strings.Contains(err.Error(), "PIDS_MAX is 30, want 20") {
		t.Errorf("Check after a live change: %v", err)
	}

	hog := inGuest(t, cgs, "dd if=/dev/zero of=/dev/null bs=64M count=1")
	if err := hog.Wait(); err == nil || !strings.Contains(err.Error(), "137") {
		t.Errorf("a 64 MB buffer under MEMORY_MAX=32M: %v, want OOM-killed", err)
	}
	if u := cgroups.ReadUsage(cgs); u.OOMKills == nil || *u.OOMKills < 1 || u.MemoryPeak == nil || *u.MemoryPeak > 32<<20 {
		t.Errorf("usage after the OOM kill: %+v", u)
	}

	left := inGuest(t, cgs, "sleep 60")
	if err := s.Down(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := left.Wait(); err == nil {
		t.Error("a process left in the cgroups survived Down")
	}
	if dirs, _ := cgroups.Paths(name); len(dirs) > 0 {
		t.Errorf("after Down: %v", dirs)
	}
}

func withChanges(req *sdk.Request, kv ...string) *sdk.Request {
	r := *req
	r.Changes = map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		r.Changes[kv[i]] = kv[i+1]
	}
	return &r
}

// TestCPUMax: a busy loop under CPU_MAX=0.5 gets half a CPU (±10 %)
// over 2 s.
func TestCPUMax(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	name := testName(t)
	req := request(name, map[string]string{"CPU_MAX": "0.5"})
	res, err := (&stage{}).Up(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { (&stage{}).Down(context.Background(), req) })
	cgs := res.Record.Cgroups
	before := cgroups.ReadUsage(cgs).CPUSeconds
	if before == nil {
		t.Skip("no CPU accounting")
	}
	start := time.Now()
	inGuest(t, cgs, "timeout 2 sh -c 'while :; do :; done'").Wait()
	used := (*cgroups.ReadUsage(cgs).CPUSeconds - *before) / time.Since(start).Seconds()
	if used < 0.4 || used > 0.6 {
		t.Errorf("a busy loop under CPU_MAX=0.5 got %.2f of a CPU, want 0.5±0.1", used)
	}
}
