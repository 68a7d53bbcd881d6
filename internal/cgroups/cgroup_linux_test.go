package cgroups

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// testName is a subhost name no other test uses.
func testName(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("dcgtest%d", os.Getpid())
	t.Cleanup(func() {
		if err := Remove(name, "", nil); err != nil {
			t.Errorf("Remove: %v", err)
		}
		if left, _ := Paths(name); len(left) > 0 {
			t.Errorf("left behind: %q", left)
		}
	})
	return name
}

// needDevices skips a test on a host without a cgroup v1 devices
// hierarchy.
func needDevices(t *testing.T) {
	t.Helper()
	hs, err := hierarchies()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(hs, func(h hierarchy) bool { return h.devices() && h.mount != "" }) {
		t.Skip("no cgroup v1 devices hierarchy on this host")
	}
}

// joined starts sh in dirs, running script; it returns the process,
// still running until its stdin is closed, and its output so far.
func joined(t *testing.T, dirs []string, script string) (*exec.Cmd, func() string) {
	t.Helper()
	var join strings.Builder
	for _, d := range dirs {
		fmt.Fprintf(&join, "echo 0 > %s/cgroup.procs || exit 9\n", d)
	}
	cmd := exec.Command("/bin/sh", "-c", join.String()+script+"\necho done\nread x\n")
	out := &stagetest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "done") {
		if time.Now().After(deadline) {
			t.Fatalf("sh said %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd, func() string { stdin.Close(); cmd.Wait(); return out.String() }
}

func dirsOf(p Placement) []string {
	var out []string
	for _, c := range p.Cgroups {
		out = append(out, c.Dir)
	}
	return out
}

func TestSetupJoinRemove(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	needDevices(t)
	name := testName(t)

	disks := []sdk.Device{{GuestName: "vda", Major: 7, Minor: 250, ReadOnly: true}}
	p, err := Setup(name, "", Defaults(), disks)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Unplaced) > 0 || !slices.Contains(p.DevicePolicy, PolicyV1Devices) {
		t.Errorf("placement %+v", p)
	}
	hs, _ := hierarchies()
	for _, h := range hs {
		if h.mount == "" {
			continue
		}
		// Every mounted hierarchy, at its root, whatever the caller's
		// own cgroup in it.
		want := sdk.Cgroup{Hierarchy: h.name(), Dir: filepath.Join(h.mount, "subhost", name), Guest: filepath.Join(h.mount, "subhost", name, "guest")}
		if !slices.Contains(p.Cgroups, want) {
			t.Errorf("%s (caller at %s): not placed at %+v: %+v", h.name(), h.path, want, p.Cgroups)
		}
		if _, err := os.Stat(want.Guest); err != nil {
			t.Error(err)
		}
		if h.has("pids") {
			if b, _ := os.ReadFile(filepath.Join(want.Dir, "pids.max")); strings.TrimSpace(string(b)) != "16384" {
				t.Errorf("pids.max %q, want the default 16384", b)
			}
		}
		if !h.devices() {
			continue
		}
		for _, dir := range []string{want.Dir, want.Guest} {
			b, err := os.ReadFile(filepath.Join(dir, "devices.list"))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Fields(strings.ReplaceAll(string(b), " ", "_")), strings.Fields(strings.ReplaceAll(strings.Join(Rules(disks), "\n"), " ", "_")); !slices.Equal(got, want) {
				t.Errorf("%s/devices.list:\n%s", dir, b)
			}
		}
	}

	// A process in the guest's cgroups: /dev/null works, /dev/loop-control
	// (10:237) and /dev/kmsg (1:11) do not, even for root, and it cannot
	// make the list wider (its cgroup namespace would hide the parent;
	// here the parent's list alone refuses it).
	var devDir string
	for _, d := range GuestDirs(p.Cgroups) {
		if _, err := os.Stat(filepath.Join(d, "devices.allow")); err == nil {
			devDir = d
		}
	}
	_, wait := joined(t, GuestDirs(p.Cgroups), fmt.Sprintf(`
(echo x > /dev/null) && echo null:ok
(: < /dev/loop-control) && echo loop-control:ok
(: < /dev/kmsg) && echo kmsg:ok
(echo a > %[1]s/devices.allow) && echo allow-all:ok
(echo 'c 10:237 rwm' > %[1]s/devices.allow) && echo allow-loop-control:ok
`, devDir))
	// While it runs, Setup adopts the cgroups (a hibernated subhost's
	// guest, a reboot) instead of making them afresh.
	if q, err := Setup(name, "", Defaults(), disks); err != nil || !slices.Equal(q.Cgroups, p.Cgroups) {
		t.Errorf("Setup with a process inside: %+v %v, want the same cgroups adopted", q, err)
	}
	out := wait()
	if !strings.Contains(out, "null:ok") || strings.Count(out, ":ok") != 1 {
		t.Errorf("in the guest's cgroups:\n%s", out)
	}

	// A second Setup, the first's guest gone, starts afresh: the
	// cgroups the first left are removed and made again, with the
	// device rules of the new disks (none).
	q, err := Setup(name, "", Defaults(), nil)
	if err != nil {
		t.Fatalf("Setup again: %v", err)
	}
	for _, c := range q.Cgroups {
		if b, err := os.ReadFile(filepath.Join(c.Dir, "devices.list")); err == nil {
			if got, want := strings.Fields(strings.ReplaceAll(string(b), " ", "_")), strings.Fields(strings.ReplaceAll(strings.Join(Rules(nil), "\n"), " ", "_")); !slices.Equal(got, want) {
				t.Errorf("after Setup again, %s/devices.list:\n%s", c.Dir, b)
			}
		}
	}
	if err := Remove(name, "", nil); err != nil {
		t.Fatal(err)
	}
	if left, _ := Paths(name); len(left) > 0 {
		t.Errorf("after Remove: %q", left)
	}
	// The parent at the fixed place stays for the next subhost.
	for _, h := range hs {
		if _, err := os.Stat(filepath.Join(h.mount, Dir)); h.mount != "" && err != nil {
			t.Errorf("the subhosts' parent in %s after Remove: %v", h.name(), err)
		}
	}
	// Not found is success.
	if err := Remove(name, "", nil); err != nil {
		t.Errorf("Remove again: %v", err)
	}
}

// TestRemoveKillsAndNested: Remove kills what is left in the cgroups,
// and removes a guest's own cgroups below its cgroup.
func TestRemoveKillsAndNested(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	needDevices(t)
	name := testName(t)
	p, err := Setup(name, "", Defaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range GuestDirs(p.Cgroups) {
		if err := os.MkdirAll(filepath.Join(d, "a", "b", "c"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd, _ := joined(t, GuestDirs(p.Cgroups), "")
	if err := Remove(name, "", nil); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the process left in the cgroups: %v, want killed", err)
	}
	if left, _ := Paths(name); len(left) > 0 {
		t.Errorf("after Remove: %q", left)
	}
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(openEnv); dir != "" {
		openDevices(dir)
	}
	os.Exit(m.Run())
}

// fakeHost makes hierarchies read the given tables.
func fakeHost(t *testing.T, cgroup, mountinfo string) {
	t.Helper()
	dir := t.TempDir()
	oldC, oldM := procCgroup, procMountinfo
	procCgroup, procMountinfo = filepath.Join(dir, "cgroup"), filepath.Join(dir, "mountinfo")
	t.Cleanup(func() { procCgroup, procMountinfo = oldC, oldM })
	if err := os.WriteFile(procCgroup, []byte(cgroup), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(procMountinfo, []byte(mountinfo), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSetupCgroupV2Only: on a cgroup v2 host, subhost/NAME is made at the
// root of the cgroup2 tree even when the caller sits in a service's
// cgroup, and with no way to apply a device policy (the "cgroup2 mount"
// here is a plain directory, where no BPF program attaches), the setup
// fails unless DEVICE_POLICY=none, and leaves nothing.
func TestSetupCgroupV2Only(t *testing.T) {
	mnt := t.TempDir()
	info := "30 1 0:26 / " + mnt + " rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	var none Limits
	none.Set("DEVICE_POLICY", "none")

	fakeHost(t, "0::/system.slice/subhost.service\n", info)
	p, err := Setup("v2guest", "", none, []sdk.Device{{GuestName: "vda", Major: 7, Minor: 1}})
	if err != nil {
		t.Fatal(err)
	}
	want := sdk.Cgroup{Hierarchy: "cgroup2", Dir: filepath.Join(mnt, "subhost", "v2guest"), Guest: filepath.Join(mnt, "subhost", "v2guest", "guest")}
	if len(p.DevicePolicy) > 0 || len(p.Unplaced) > 0 || !slices.Equal(p.Cgroups, []sdk.Cgroup{want}) {
		t.Errorf("placement %+v, want no device policy and cgroups [%+v]", p, want)
	}
	if fi, err := os.Stat(want.Guest); err != nil || !fi.IsDir() {
		t.Errorf("guest dir: %v", err)
	}
	if err := remove([]hierarchy{{membership: membership{id: "0", path: "/"}, mount: mnt, base: mnt}}, "v2guest"); err != nil {
		t.Fatal(err)
	}
	if left := leftBesidesParent(mnt); len(left) > 0 {
		t.Errorf("after remove: %v", left)
	}

	// The program cannot attach to a plain directory: the boot fails.
	if _, err := Setup("v2guest", "", Defaults(), nil); err == nil || !strings.Contains(err.Error(), "cgroup2 device program") {
		t.Errorf("Setup where the device program cannot attach: %v", err)
	}
	if left := leftBesidesParent(mnt); len(left) > 0 {
		t.Errorf("after a failed Setup: %v", left)
	}
	// A host with neither v1 devices nor cgroup2: no device policy at
	// all, which only DEVICE_POLICY=none accepts.
	fakeHost(t, "3:memory:/\n", "30 1 0:26 / "+mnt+" rw - cgroup cgroup rw,memory\n")
	if _, err := Setup("v2guest", "", Defaults(), nil); err == nil || !strings.Contains(err.Error(), "DEVICE_POLICY=none") {
		t.Errorf("Setup without a way to apply a device policy: %v", err)
	}
	if left := leftBesidesParent(mnt); len(left) > 0 {
		t.Errorf("after a failed Setup: %v", left)
	}

	// Not mounted at all: nothing placed, and said so.
	fakeHost(t, "5:devices:/\n0::/\n", "")
	p, err = Setup("v2guest", "", none, nil)
	if err != nil || len(p.Cgroups) > 0 || !slices.Equal(p.Unplaced, []string{"devices", "cgroup2"}) {
		t.Errorf("nothing mounted: %+v %v", p, err)
	}
}

func writeTestFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// leftBesidesParent lists what is in the hierarchy mounted at mnt but the
// subhosts' parent, which stays once made (empty, it is all that may be
// left).
func leftBesidesParent(mnt string) []string {
	var out []string
	ents, _ := os.ReadDir(mnt)
	for _, e := range ents {
		if e.Name() == Dir {
			if in, _ := os.ReadDir(filepath.Join(mnt, Dir)); len(in) == 0 {
				continue
			}
		}
		out = append(out, e.Name())
	}
	return out
}

// TestApplyAllOrNothing: a change the kernel refuses part way (here a v1
// cpuset narrower than one the guest made below its own, after pids.max
// was written) puts back what was written before it: `subhost set`
// changes all of its keys or none.
func TestApplyAllOrNothing(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	name := testName(t)
	p, err := Setup(name, "", Defaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cpuset, pids sdk.Cgroup
	for _, c := range p.Cgroups {
		switch {
		case strings.HasSuffix(c.Hierarchy, "cpuset") && !strings.HasPrefix(c.Hierarchy, "cgroup2"):
			cpuset = c
		case strings.HasSuffix(c.Hierarchy, "pids") && !strings.HasPrefix(c.Hierarchy, "cgroup2"):
			pids = c
		}
	}
	all, _ := os.ReadFile(filepath.Join(cpuset.Guest, "cpuset.cpus"))
	if cpuset.Dir == "" || pids.Dir == "" || !strings.Contains(string(all), "-") {
		t.Skip("needs v1 cpuset and pids hierarchies and two CPUs")
	}
	// The guest's own cgroup below its cpuset, with every CPU.
	inner := filepath.Join(cpuset.Guest, "inner")
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(inner)
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		b, _ := os.ReadFile(filepath.Join(cpuset.Guest, f))
		if err := os.WriteFile(filepath.Join(inner, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var l Limits
	l.Set("PIDS_MAX", "100")
	l.Set("CPUSET_CPUS", "0")
	err = Apply(name, p.Cgroups, l)
	if err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("Apply refused part way: %v, want an error saying nothing changed", err)
	}
	if b, _ := os.ReadFile(filepath.Join(pids.Dir, "pids.max")); strings.TrimSpace(string(b)) != "16384" {
		t.Errorf("pids.max is %q after the refused change, want 16384 as before", b)
	}
	if b, _ := os.ReadFile(filepath.Join(cpuset.Dir, "cpuset.cpus")); string(b) != string(all) {
		t.Errorf("cpuset.cpus is %q after the refused change, want %q as before", b, all)
	}
	os.Remove(inner)
	if err := Remove(name, "", p.Cgroups); err != nil {
		t.Fatal(err)
	}
}

// The undo puts files back in the reverse order of the writes that took,
// not of the first tries: narrowing a v1 cpuset, the parent is refused
// first (its child is wider), the child is written, then the parent; the
// undo must widen the parent before the child, or the kernel refuses it.
func TestUndoOrderIsThatOfTheWritesThatTook(t *testing.T) {
	dir := t.TempDir()
	parent, child := filepath.Join(dir, "parent"), filepath.Join(dir, "child")
	os.WriteFile(parent, []byte("0-1\n"), 0o644)
	os.WriteFile(child, []byte("0-1\n"), 0o644)
	// A kernel that keeps the child within its parent.
	read := func(p string) string { b, _ := os.ReadFile(p); return strings.TrimSpace(string(b)) }
	kernel := func(path, s string) error {
		if path == parent && read(child) == "0-1" && s == "0" || path == child && read(parent) == "0" && s == "0-1" {
			return errors.New("device or resource busy")
		}
		return os.WriteFile(path, []byte(s+"\n"), 0o644)
	}
	u := undoLog{writeFile: kernel}
	if err := u.write(parent, "0"); err == nil {
		t.Fatal("the kernel took a parent narrower than its child")
	}
	if err := u.write(child, "0"); err != nil {
		t.Fatal(err)
	}
	if err := u.write(parent, "0"); err != nil {
		t.Fatal(err)
	}
	if err := u.restore(); err != nil {
		t.Errorf("restore: %v", err)
	}
	if read(parent) != "0-1" || read(child) != "0-1" {
		t.Errorf("after the undo: parent %q, child %q, want both 0-1", read(parent), read(child))
	}
}
