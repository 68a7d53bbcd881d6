package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/cgroups"
	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// deviceCgroup reports whether this host has a cgroup v1 devices
// hierarchy, where the init stage applies the guest's device policy.
func deviceCgroup(t *testing.T) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range parseMountinfo(string(b)) {
		if m.fstype == "cgroup" && hasOpt(m.superOpts, "devices") {
			return true
		}
	}
	return false
}

// noCgroups fails the test if subhost name has cgroups left.
func noCgroups(t *testing.T, name, when string) {
	t.Helper()
	left, err := cgroups.Paths(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("%s, cgroups left: %q", when, left)
	}
}

// testLoop attaches a loop device to a new 1 MiB image starting with
// marker, detached when the test ends.
func testLoop(t *testing.T, marker string, ro bool) *loopdev.Device {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, append([]byte(marker), make([]byte, 1<<20)...), 0o644); err != nil {
		t.Fatal(err)
	}
	dev, f, err := loopdev.Attach(img, loopdev.Options{ReadOnly: ro, Tag: "subhost-devcgroup-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if err := loopdev.Detach(*dev); err != nil {
			t.Errorf("detach %s: %v", dev.Path, err)
		}
	})
	return dev
}

// TestDevicePolicy boots testdata/devprobe with a console, a read-only
// and a read-write disk, and checks from inside the guest that it can use
// what it was given and reach no other device: not a host loop device the
// test attached (by a devtmpfs, or a node in its image), not
// loop-control, not the host's console, whatever it writes to its device
// cgroup. The cgroups (made here as the cgroup stage would) stay after
// the guest ends, and a second boot on the same record uses them again.
func TestDevicePolicy(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	if !deviceCgroup(t) {
		t.Skip("no cgroup v1 devices hierarchy: the policy is not applied on this host")
	}
	probe := buildTestdata(t, "devprobe")
	ro := testLoop(t, "devprobe marker", true)
	rw := testLoop(t, "devprobe rw", false)
	other := testLoop(t, "devprobe other", false)

	root := scratchRoot(t, "exit")
	hostDisk := hostRootDisk(t)
	conf, _ := json.Marshal(map[string]string{"ro": "vdc", "rw": "vdd", "other": other.Name(), "host_disk": hostDisk})
	if err := os.WriteFile(filepath.Join(root, "devprobe.conf"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	// Nodes in the guest's own image: the scratch root is mounted without
	// nodev, as a guest's bind remount could make its own.
	nodes := filepath.Join(root, "image-nodes")
	os.Mkdir(nodes, 0o755)
	for _, n := range []struct {
		name string
		mode uint32
		dev  uint64
	}{
		{"other", unix.S_IFBLK, unix.Mkdev(other.Major, other.Minor)},
		{"loop-control", unix.S_IFCHR, unix.Mkdev(10, 237)},
		{"console", unix.S_IFCHR, unix.Mkdev(5, 1)},
	} {
		if err := unix.Mknod(filepath.Join(nodes, n.name), n.mode|0o600, int(n.dev)); err != nil {
			t.Fatal(err)
		}
	}

	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	consoleOK := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(ptmx)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "devprobe: console ok") {
				close(consoleOK)
				return
			}
		}
	}()

	req := guestRequest(t, root, map[string]string{"init_binary": probe})
	req.Console = tty.Name()
	req.Record.Devices = []sdk.Device{
		{GuestName: "vdc", HostPath: ro.Path, Major: ro.Major, Minor: ro.Minor, ReadOnly: true},
		{GuestName: "vdd", HostPath: rw.Path, Major: rw.Major, Minor: rw.Minor},
	}
	placeCgroups(t, req)
	res := upGuest(t, &stage{}, req)
	if ws, ok := reap(t, res.Record.GuestPID, 20*time.Second); !ok || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("devprobe ended with %v", ws)
	}
	b, err := os.ReadFile(filepath.Join(root, "devprobe.json"))
	if err != nil {
		t.Fatalf("no report from the guest: %v", err)
	}
	var r map[string]string
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	select {
	case <-consoleOK:
	case <-time.After(5 * time.Second):
		t.Error("the guest's write to /dev/console did not reach the console pty")
	}

	want := map[string]string{
		// What it was given.
		"null": "ok", "zero": "ok", "urandom": "ok", "tty": "ok", "console": "ok", "ptmx": "ok", "pts": "ok",
		"ro-read": "ok devprobe marker", "rw-rdwr": "ok",
		"mknod-null": "ok", "mknod-tun": "ok",
		// A read-only disk is read-only for the device cgroup too.
		"ro-write": "EPERM", "ro-rdwr": "EPERM",
		// Nothing else, by any way.
		"image-other": "EPERM", "image-loop-control": "EPERM", "image-console": "EPERM",
		"mknod-loop-control": "EPERM", "mknod-console": "EPERM", "mknod-kmsg": "EPERM",
		"mount-devtmpfs": "ok", "devtmpfs-other": "EPERM", "devtmpfs-loop-control": "EPERM",
		"devtmpfs-console": "EPERM", "devtmpfs-kmsg": "EPERM",
		// Its device cgroup is "/" in its namespace, shows the policy and
		// nothing above it, and cannot be widened, nor can a child's.
		"mount-devices": "ok", "dirs-devices": "",
		"allow-all": "EPERM", "allow-loop-control": "EPERM", "allow-all-blocks": "EPERM",
		"mkdir-sub": "ok", "join-sub": "ok", "sub-allow-all": "EPERM", "sub-allow-loop-control": "EPERM",
		"image-other-after": "EPERM", "mknod-loop-control-after": "EPERM",
	}
	if hostDisk != "" {
		want["devtmpfs-host-disk"] = "EPERM"
	}
	for k, w := range want {
		if r[k] != w {
			t.Errorf("guest %s: %q, want %q", k, r[k], w)
		}
	}
	if got := r["devices-cgroup-after-join"]; !strings.HasSuffix(got, ":devices:/sub") {
		t.Errorf("guest's devices cgroup after joining its child: %q, want /sub", got)
	}
	wantList := cgroups.Rules(req.Record.Devices)
	gotList := strings.Split(strings.TrimSpace(r["devices.list"]), "\n")
	slices.Sort(wantList)
	slices.Sort(gotList)
	if !slices.Equal(gotList, wantList) {
		t.Errorf("guest's devices.list:\n%s\nwant\n%s", r["devices.list"], strings.Join(wantList, "\n"))
	}
	// The guest sees no hierarchy's root: every line of its
	// /proc/self/cgroup is "/" (in the hierarchies where the launcher was
	// not at the root, "/" is the launcher's own cgroup), no release_agent
	// anywhere, and the hierarchies the guest was placed in show no
	// other cgroup.
	for _, line := range strings.Split(strings.TrimSpace(r["proc-cgroup"]), "\n") {
		if !strings.HasSuffix(line, ":/") {
			t.Errorf("guest's /proc/self/cgroup line %q, want /", line)
		}
	}
	for k, v := range r {
		if strings.HasPrefix(k, "release_agent-") {
			t.Errorf("guest %s: %s", k, v)
		}
		if strings.HasPrefix(k, "mount-") && v != "ok" {
			t.Errorf("guest %s: %s", k, v)
		}
	}
	placed, err := placedHierarchies()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range placed {
		if got, ok := r["dirs-"+h]; !ok || got != "" {
			t.Errorf("guest's view of hierarchy %s: cgroups %q (seen: %v), want none", h, got, ok)
		}
	}
	if t.Failed() {
		t.Logf("the guest said:\n%s", b)
	}

	// The guest is gone, its cgroups (and the child it made) stay, as a
	// hibernating subhost's do; a new boot goes into them again.
	if left, _ := cgroups.Paths(req.Subhost.Name); len(left) == 0 {
		t.Error("the cgroups are gone")
	}
	os.Remove(filepath.Join(root, "devprobe.json"))
	again := *req
	again.State = res.State
	res2 := upGuest(t, &stage{}, &again)
	if ws, ok := reap(t, res2.Record.GuestPID, 20*time.Second); !ok || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("devprobe, second boot, ended with %v", ws)
	}
	if b, err := os.ReadFile(filepath.Join(root, "devprobe.json")); err != nil || !strings.Contains(string(b), `"devtmpfs-other": "EPERM"`) {
		t.Errorf("second boot: %v\n%s", err, b)
	}
	after := *req
	after.State = res2.State
	after.Record.GuestPID, after.Record.GuestStartTime = res2.Record.GuestPID, res2.Record.GuestStartTime
	if err := (&stage{}).Down(ctx(t), &after); err != nil {
		t.Fatalf("Down: %v", err)
	}
}

// hostRootDisk names the block device (as in /dev) that holds the host's
// root filesystem, "" when it is not on one or the host itself cannot
// open it (a sandbox's own device policy: the guest's refusal would then
// prove nothing).
func hostRootDisk(t *testing.T) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(l, "DEVNAME="); ok {
			f, err := os.Open("/dev/" + name)
			if err != nil {
				t.Logf("the host cannot open its root disk %s either (%v): not tried from the guest", name, err)
				return ""
			}
			f.Close()
			return name
		}
	}
	return ""
}

// placedHierarchies names, as devprobe does, the cgroup hierarchies in
// which this process (and so the launcher) is at the root: those the
// guest is placed in.
func placedHierarchies() ([]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && f[2] == "/" {
			name := f[1]
			if name == "" {
				name = "cgroup2"
			}
			out = append(out, name)
		}
	}
	return out, nil
}
