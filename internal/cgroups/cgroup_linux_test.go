package cgroups

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
		if err := Remove(name); err != nil {
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
	out := &syncBuffer{}
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

func TestSetupJoinRemove(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	needDevices(t)
	name := testName(t)

	disks := []sdk.Device{{GuestName: "vda", Major: 7, Minor: 250, ReadOnly: true}}
	p, err := Setup(name, disks)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Devices || len(p.Unplaced) > 0 {
		t.Errorf("placement %+v", p)
	}
	hs, _ := hierarchies()
	for _, h := range hs {
		if h.mount == "" {
			continue
		}
		_, err := os.Stat(h.guestDir(name))
		if placed := h.devices() || h.atRoot(); placed != (err == nil) || placed != slices.Contains(p.Dirs, h.guestDir(name)) {
			t.Errorf("%s (caller at %s): placed %v, guest dir: %v, dirs %q", h.name(), h.path, placed, err, p.Dirs)
		}
		if !h.devices() {
			continue
		}
		for _, dir := range []string{h.nameDir(name), h.guestDir(name)} {
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
	for _, d := range p.Dirs {
		if _, err := os.Stat(filepath.Join(d, "devices.allow")); err == nil {
			devDir = d
		}
	}
	_, wait := joined(t, p.Dirs, fmt.Sprintf(`
(echo x > /dev/null) && echo null:ok
(: < /dev/loop-control) && echo loop-control:ok
(: < /dev/kmsg) && echo kmsg:ok
(echo a > %[1]s/devices.allow) && echo allow-all:ok
(echo 'c 10:237 rwm' > %[1]s/devices.allow) && echo allow-loop-control:ok
`, devDir))
	// While it runs, the cgroups cannot be removed or made afresh.
	if err := Remove(name); !errors.Is(err, ErrBusy) {
		t.Errorf("Remove with a process inside: %v, want ErrBusy", err)
	}
	if _, err := Setup(name, disks); !errors.Is(err, ErrBusy) {
		t.Errorf("Setup with a process inside: %v, want ErrBusy", err)
	}
	out := wait()
	if !strings.Contains(out, "null:ok") || strings.Count(out, ":ok") != 1 {
		t.Errorf("in the guest's cgroups:\n%s", out)
	}

	// A second Setup, the first's guest gone, starts afresh.
	if _, err := Setup(name, nil); err != nil {
		t.Fatalf("Setup again: %v", err)
	}
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	if left, _ := Paths(name); len(left) > 0 {
		t.Errorf("after Remove: %q", left)
	}
	// Not found is success.
	if err := Remove(name); err != nil {
		t.Errorf("Remove again: %v", err)
	}
}

// TestRemoveNested: a guest's own cgroups below its cgroup go too.
func TestRemoveNested(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	needDevices(t)
	name := testName(t)
	p, err := Setup(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range p.Dirs {
		if err := os.MkdirAll(filepath.Join(d, "a", "b", "c"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	if left, _ := Paths(name); len(left) > 0 {
		t.Errorf("after Remove: %q", left)
	}
}

// joinEnv makes the test binary a process that calls JoinGuest for the
// name it holds, then tries two devices.
const joinEnv = "DEVCGROUP_TEST_JOIN"

func TestMain(m *testing.M) {
	if name := os.Getenv(joinEnv); name != "" {
		dirs, err := JoinGuest(name)
		fmt.Printf("joined %d %v\n", len(dirs), err)
		for _, dev := range []string{"/dev/null", "/dev/loop-control"} {
			f, err := os.Open(dev)
			if err == nil {
				f.Close()
			}
			fmt.Printf("%s: %v\n", dev, err)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestJoinGuest: what subhost enter needs, a process joining a running
// guest's cgroups.
func TestJoinGuest(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	needDevices(t)
	name := testName(t)
	run := func() string {
		cmd := exec.Command("/proc/self/exe")
		cmd.Env = []string{joinEnv + "=" + name}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return string(out)
	}
	if out := run(); !strings.Contains(out, "joined 0 <nil>") || !strings.Contains(out, "/dev/loop-control: <nil>") {
		t.Errorf("JoinGuest before Setup:\n%s", out)
	}
	p, err := Setup(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := run()
	if !strings.Contains(out, fmt.Sprintf("joined %d <nil>", len(p.Dirs))) || !strings.Contains(out, "/dev/null: <nil>") ||
		!strings.Contains(out, "/dev/loop-control: open /dev/loop-control: operation not permitted") {
		t.Errorf("JoinGuest after Setup:\n%s", out)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
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

// TestSetupCgroupV2Only: on a cgroup v2 host, no device policy, and the
// guest is placed below the root when the caller is at it, not when it
// is in a cgroup of its own. The "cgroup2 mount" is a plain directory.
func TestSetupCgroupV2Only(t *testing.T) {
	mnt := t.TempDir()
	info := "30 1 0:26 / " + mnt + " rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"

	fakeHost(t, "0::/\n", info)
	p, err := Setup("v2guest", []sdk.Device{{GuestName: "vda", Major: 7, Minor: 1}})
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(mnt, "subhost", "v2guest", "guest")
	if p.Devices || len(p.Unplaced) > 0 || !slices.Equal(p.Dirs, []string{want}) {
		t.Errorf("placement %+v, want no devices and dirs [%s]", p, want)
	}
	if fi, err := os.Stat(want); err != nil || !fi.IsDir() {
		t.Errorf("guest dir: %v", err)
	}
	if err := Remove("v2guest"); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(mnt); len(left) > 0 {
		t.Errorf("after Remove: %v", left)
	}

	fakeHost(t, "0::/system.slice/subhost.service\n", info)
	p, err = Setup("v2guest", nil)
	if err != nil || p.Devices || len(p.Dirs) > 0 || len(p.Unplaced) > 0 {
		t.Errorf("in a service's cgroup: %+v %v, want nothing placed", p, err)
	}

	// Not mounted at all: nothing placed, and said so.
	fakeHost(t, "5:devices:/\n0::/\n", "")
	p, err = Setup("v2guest", nil)
	if err != nil || p.Devices || len(p.Dirs) > 0 || !slices.Equal(p.Unplaced, []string{"devices", "cgroup2"}) {
		t.Errorf("nothing mounted: %+v %v", p, err)
	}
}
