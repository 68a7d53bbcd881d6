package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/testguest"
)

// guest is a pretend-boot subhost of a test: a busybox root imaged on an
// MBR disk, a home whose config names that image and bridge br0 of the
// test's own network namespace, and (when served) an address on eth0.
type guest struct {
	e                *env
	name, home, ns   string
	root             *testguest.Root
	ip, mac, subnet3 string // 198.18.S.2, 06:a7:dd:b4:S:02, "198.18.S"
	config           string
	image            string // its disk image, vda in the config
}

// newGuest prepares (does not boot) a pretend-boot guest in a fresh netns
// with br0 = 198.18.S.1/24 (S its own, from nextSubnet); the guest serves
// HTTP on 198.18.S.2 from rcS.
// mod, when not nil, adds to the root before it is imaged.
func (e *env) newGuest(tag string, mod func(r *testguest.Root)) *guest {
	e.t.Helper()
	ns, s := e.testnet()
	g := &guest{e: e, name: e.name(tag), subnet3: fmt.Sprintf("198.18.%d", s), ns: ns}
	g.ip = g.subnet3 + ".2"
	g.mac = fmt.Sprintf("06:a7:dd:b4:%02x:02", s)
	g.root = testguest.BusyboxRoot(e.t, filepath.Join(e.t.TempDir(), "root"))
	g.root.Serve("eth0", g.ip+"/24")
	if mod != nil {
		mod(g.root)
	}
	g.image = testguest.Image(e.t, g.root.Dir, "mbr")
	g.config = fmt.Sprintf("DISKS=( vda:1:%s )\nBRIDGES=( br0:%s )", g.image, g.mac)
	g.home = e.home(g.config)
	return g
}

// runArgs are the arguments of `subhost run` for this guest.
func (g *guest) runArgs(extra ...string) []string {
	return append(append([]string{"run", "--pipeline", "pretend-boot", "--home", g.home}, extra...), g.name)
}

// boot runs the guest detached and waits until its rcS has finished.
func (g *guest) boot() {
	g.e.t.Helper()
	g.e.mustRun(g.ns, g.runArgs("--detach")...)
	g.waitReady()
}

// waitReady waits for the rcS marker in the running guest.
func (g *guest) waitReady() {
	g.e.t.Helper()
	g.e.waitFor(g.name+"'s rcS", 10*time.Second, func() bool { return g.e.guestHas(g.name, "/run/ready-rcS") })
}

// get fetches path from the guest's httpd over the test netns's bridge.
func (g *guest) get(path string) (string, error) {
	return httpGet(g.ns, "http://"+g.ip+path)
}

// serves waits until the guest serves its hostname over the bridge.
func (g *guest) serves() {
	g.e.t.Helper()
	var last error
	if !poll(10*time.Second, func() bool {
		page, err := g.get("/")
		if err == nil && strings.TrimSpace(page) != g.name {
			err = fmt.Errorf("page %q, want the hostname %q", page, g.name)
		}
		last = err
		return err == nil
	}) {
		g.e.t.Fatalf("%s does not answer over its bridge: %v", g.name, last)
	}
}

// enter runs a command in the guest and returns its output and exit code.
func (g *guest) enter(args ...string) (string, int) {
	g.e.t.Helper()
	o, er, code := g.e.run(append([]string{"enter", g.name, "--"}, args...)...)
	return o + er, code
}

// mustEnter is enter that fails the test unless the command succeeds.
func (g *guest) mustEnter(args ...string) string {
	g.e.t.Helper()
	out, code := g.enter(args...)
	if code != 0 {
		g.e.t.Fatalf("enter %s -- %s: exit %d: %s", g.name, strings.Join(args, " "), code, out)
	}
	return out
}

// TestPretendBootDisks: DISKS=( vda:1:A vdb:1:B vdc:0:C ). The guest's / is
// partition 1 of A; /dev/vda, /dev/vda1 (read-only), /dev/vdb, /dev/vdb1
// and /dev/vdc are block devices holding what their images hold.
func TestPretendBootDisks(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("disks", func(r *testguest.Root) { r.WriteFile("marker", "image A\n", 0o644) })
	b := t.TempDir()
	os.WriteFile(filepath.Join(b, "marker"), []byte("image B\n"), 0o644)
	imgB := testguest.Image(t, b, "gpt")
	c := t.TempDir()
	os.WriteFile(filepath.Join(c, "marker"), []byte("image C\n"), 0o644)
	imgC := testguest.Image(t, c, "none")
	g.config = strings.Replace(g.config, " )\n", fmt.Sprintf(" vdb:1:%s vdc:0:%s )\n", imgB, imgC), 1)
	g.home = e.home(g.config)
	g.boot()

	if got := g.mustEnter("cat", "/marker"); got != "image A\n" {
		t.Errorf("guest /marker = %q, want the root image's %q", got, "image A\n")
	}
	for _, dev := range []string{"/dev/vda", "/dev/vda1", "/dev/vdb", "/dev/vdb1", "/dev/vdc"} {
		if out, code := g.enter("test", "-b", dev); code != 0 {
			t.Errorf("%s is not a block device in the guest (%s)", dev, out)
		}
	}
	for _, dev := range []string{"/dev/vdb2", "/dev/vdc1", "/dev/vda2"} {
		if _, code := g.enter("test", "-e", dev); code == 0 {
			t.Errorf("%s exists in the guest; the config declares no such disk or partition", dev)
		}
	}
	// Each node is its image: an ext4 magic (0xEF53 at 1080) on the
	// partitions and the bare filesystem, the MBR/GPT signature 0x55AA at
	// 510 on whole disks.
	read := func(dev string, off, n int) string {
		return strings.TrimSpace(g.mustEnter("sh", "-c", fmt.Sprintf("dd if=%s bs=1 skip=%d count=%d 2>/dev/null | od -An -tx1", dev, off, n)))
	}
	for _, dev := range []string{"/dev/vda1", "/dev/vdb1", "/dev/vdc"} {
		if got := read(dev, 1080, 2); got != "53 ef" {
			t.Errorf("%s: bytes at 1080 = %q, want the ext4 magic 53 ef", dev, got)
		}
	}
	for _, dev := range []string{"/dev/vda", "/dev/vdb"} {
		if got := read(dev, 510, 2); got != "55 aa" {
			t.Errorf("%s: bytes at 510 = %q, want the partition table signature 55 aa", dev, got)
		}
	}
	// The root disk is mounted by the host: raw writes must fail.
	for _, dev := range []string{"/dev/vda", "/dev/vda1"} {
		if out, code := g.enter("sh", "-c", "printf x >"+dev); code == 0 {
			t.Errorf("writing to %s in the guest succeeded; the root disk must be read-only (%s)", dev, out)
		}
	}
	// Other disks are the guest's: writable.
	if out, code := g.enter("sh", "-c", "dd if=/dev/vdb bs=512 count=1 2>/dev/null | dd of=/dev/vdb bs=512 count=1 conv=notrunc 2>&1"); code != 0 {
		t.Errorf("rewriting /dev/vdb's first sector in the guest failed: %s", out)
	}
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}

// TestPretendBootBridges: BRIDGES=( br0:MAC0 br1:MAC1 ). Inside, eth0 and
// eth1 have those MACs; on the host (the test netns) NAME0 and NAME1 are
// ports of br0 and br1.
func TestPretendBootBridges(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("brs", nil)
	testguest.Bridge(t, g.ns, "br1", fmt.Sprintf("198.18.%d.1/24", nextSubnet()))
	mac1 := "06:a7:dd:b4:23:02"
	g.config = strings.Replace(g.config, "BRIDGES=( br0:"+g.mac+" )", "BRIDGES=( br0:"+g.mac+" br1:"+mac1+" )", 1)
	g.home = e.home(g.config)
	g.boot()

	for i, mac := range []string{g.mac, mac1} {
		got := strings.TrimSpace(g.mustEnter("cat", fmt.Sprintf("/sys/class/net/eth%d/address", i)))
		if got != mac {
			t.Errorf("guest eth%d has MAC %s, want %s", i, got, mac)
		}
		host := fmt.Sprintf("%s%d", g.name, i)
		out, err := exec.Command("ip", "-n", g.ns, "-j", "link", "show", "dev", host).Output()
		if err != nil {
			t.Errorf("host side %s not in the test netns: %v", host, err)
			continue
		}
		var links []struct {
			Master string `json:"master"`
		}
		json.Unmarshal(out, &links)
		if want := fmt.Sprintf("br%d", i); len(links) != 1 || links[0].Master != want {
			t.Errorf("host side %s: %s, want a port of %s", host, out, want)
		}
	}
	g.serves()
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}

// TestPretendBootServes: rcS and rc 2 run (markers on the image, shown on
// the console), and the guest answers over its bridge from the test netns.
func TestPretendBootServes(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("serve", nil)
	g.boot()
	g.serves()
	e.waitFor("rc 2", 5*time.Second, func() bool { return e.guestHas(g.name, "/root/rc2-ran") })
	if !e.guestHas(g.name, "/root/rcS-ran") {
		t.Errorf("no /root/rcS-ran in the guest")
	}
	// The markers are on the image's filesystem, which the host has on HOME/live.
	for _, m := range []string{"rcS-ran", "rc2-ran"} {
		if _, err := os.Stat(filepath.Join(g.home, "live", "root", m)); err != nil {
			t.Errorf("marker not on the root image: %v", err)
		}
	}
	if h := strings.TrimSpace(g.mustEnter("hostname")); h != g.name {
		t.Errorf("guest hostname %q, want %q", h, g.name)
	}
	e.waitFor("console log", 5*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(logDir, g.name+".log"))
		return strings.Contains(string(b), "testguest: rcS done") && strings.Contains(string(b), "testguest: rc 2")
	})
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}

// TestPretendBootInitctlPowerOff: writing anything to /run/initctl powers
// the guest off, and pretend-boot (on_exit = down) tears everything down.
func TestPretendBootInitctlPowerOff(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("ictl", nil)
	g.boot()
	g.enter("sh", "-c", "echo x >/run/initctl")
	e.clean(g.name)
}

// TestPretendBootPowerOff: busybox poweroff inside the guest runs rc 0 and
// tears everything down.
func TestPretendBootPowerOff(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("poff", nil)
	g.boot()
	g.enter("poweroff")
	e.clean(g.name)
	b, _ := os.ReadFile(filepath.Join(logDir, g.name+".log"))
	if !strings.Contains(string(b), "testguest: rc 0") {
		t.Errorf("rc 0 did not run at power off; console log:\n%s", tail(string(b), 2000))
	}
}

// TestPretendBootReboot: busybox reboot inside the guest starts it again on
// the same mounts and network: a new PID 1 and a new boot, answering at
// the same address with the same MAC.
func TestPretendBootReboot(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("rboot", nil)
	g.boot()
	g.serves()
	before := e.status(g.name)
	boot1, err := g.get("/boot")
	if err != nil {
		t.Fatal(err)
	}
	g.enter("reboot")
	var after report
	e.waitFor("a new PID 1", 15*time.Second, func() bool {
		r, err := e.statusErr(g.name)
		after = r
		return err == nil && r.State == "running" && r.PID != 0 && r.PID != before.PID
	})
	var boot2 string
	e.waitFor("the rebooted guest to answer with a new boot id", 15*time.Second, func() bool {
		boot2, err = g.get("/boot")
		return err == nil && boot2 != boot1
	})
	g.serves()
	if mac := strings.TrimSpace(g.mustEnter("cat", "/sys/class/net/eth0/address")); mac != g.mac {
		t.Errorf("after reboot eth0 has MAC %s, want %s", mac, g.mac)
	}
	if after.Supervisor != before.Supervisor {
		t.Errorf("supervisor changed over the reboot: %d, then %d", before.Supervisor, after.Supervisor)
	}
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}

// TestPretendBootStop: `subhost stop` of a running guest powers it off
// (rc 0 runs) and leaves the host clean.
func TestPretendBootStop(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("stop", nil)
	g.boot()
	pid := e.status(g.name).PID
	out := e.mustRun("", "stop", g.name)
	if !strings.Contains(out, "stopped") {
		t.Errorf("stop printed %q", out)
	}
	e.clean(g.name)
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("guest PID 1 (%d) still exists after stop", pid)
	}
	b, _ := os.ReadFile(filepath.Join(logDir, g.name+".log"))
	if !strings.Contains(string(b), "testguest: rc 0") {
		t.Errorf("rc 0 did not run at stop; console log:\n%s", tail(string(b), 2000))
	}
	if o, _, _ := e.run("stop", g.name); !strings.Contains(o, "not running") {
		t.Errorf("stop of a stopped subhost printed %q, want 'not running'", o)
	}
}

// TestPretendBootShutdownLocksSysctls: while the guest runs, the sysctls
// of its own UTS and IPC namespaces are writable; once it reboots or
// powers off, its rc 6 or rc 0 finds them read-only (their mounts gone
// from /proc/mounts) and its network namespace's still writable; the
// rebooted guest has them writable again. Each probe writes the current
// value back.
func TestPretendBootShutdownLocksSysctls(t *testing.T) {
	e := newEnv(t)
	probe := `for k in kernel/shmmax kernel/hostname fs/mqueue/msg_max net/ipv4/ip_forward; do
	v=$(cat /proc/sys/$k) && if echo "$v" >/proc/sys/$k 2>/dev/null; then r=rw; else r=ro; fi
	echo "probe rc$RUNLEVEL $k $r"
done
echo "probe rc$RUNLEVEL sysctl mounts $(grep -c ' /proc/sys/' /proc/mounts)"`
	g := e.newGuest("sysct", func(r *testguest.Root) {
		for _, rl := range []int{2, 6, 0} {
			r.Script(rl, "S50probe", probe)
		}
	})
	g.boot()
	console := func() string {
		b, _ := os.ReadFile(filepath.Join(logDir, g.name+".log"))
		return string(b)
	}
	e.waitFor("rc 2's probe", 10*time.Second, func() bool {
		return strings.Contains(console(), "probe rc2 sysctl mounts")
	})
	g.enter("reboot")
	e.waitFor("the rebooted guest's rc 2 probe", 15*time.Second, func() bool {
		return strings.Count(console(), "probe rc2 sysctl mounts") == 2
	})
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
	log := console()
	count := map[string]int{}
	for _, l := range strings.Split(log, "\n") {
		count[strings.TrimRight(l, "\r")]++
	}
	for want, n := range map[string]int{
		"probe rc2 kernel/shmmax rw": 2, "probe rc2 kernel/hostname rw": 2, "probe rc2 fs/mqueue/msg_max rw": 2, "probe rc2 net/ipv4/ip_forward rw": 2,
		"probe rc6 kernel/shmmax ro": 1, "probe rc6 kernel/hostname ro": 1, "probe rc6 fs/mqueue/msg_max ro": 1, "probe rc6 net/ipv4/ip_forward rw": 1,
		"probe rc6 sysctl mounts 1":  1, // /proc/sys/net's
		"probe rc0 kernel/shmmax ro": 1, "probe rc0 kernel/hostname ro": 1, "probe rc0 fs/mqueue/msg_max ro": 1, "probe rc0 net/ipv4/ip_forward rw": 1,
		"probe rc0 sysctl mounts 1": 1,
	} {
		if count[want] != n {
			t.Errorf("line %q on the console %d times, want %d:\n%s", want, count[want], n, tail(log, 3000))
		}
	}
}

// TestPretendBootStopTimeout: a guest whose rc 0 hangs is killed after
// stop's --timeout, and stop completes with the host clean.
func TestPretendBootStopTimeout(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("hang", func(r *testguest.Root) { r.Script(0, "S01hang", "sleep 1000") })
	g.boot()
	pid := e.status(g.name).PID
	t0 := time.Now()
	e.mustRun("", "stop", "--timeout", "2s", g.name)
	took := time.Since(t0)
	e.clean(g.name)
	if took < 2*time.Second || took > 10*time.Second {
		t.Errorf("stop --timeout 2s took %v; want the timeout, then a kill", took.Round(time.Millisecond))
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("guest PID 1 (%d) still exists after stop", pid)
	}
}

// TestRebootAfterThePipelineFileBroke: the pipeline file a subhost was
// booted with is broken while it runs. Its supervisor, executed again by
// subhost-monitor for the guest's reboot, goes on with the plan recorded
// at boot: the guest comes back, and stop, loading the broken file too,
// takes it down from the state.
func TestRebootAfterThePipelineFileBroke(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("pbrk", nil)
	file := pipelineFile(t, `
pipeline "e2e-edited" {
  home    = "/opt/sub"
  on_exit = "down"

  stage "mount-loop" {}
  stage "net-veth" {}
  stage "cgroup" {}
  stage "init" {
    mode = "sysv"
  }
}
`)
	e.mustRun(g.ns, "--pipeline-file", file, "run", "--detach", "--pipeline", "e2e-edited", "--home", g.home, g.name)
	g.waitReady()
	before := e.status(g.name)
	if err := os.WriteFile(file, []byte("pipeline \"e2e-edited\" {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.enter("reboot")
	e.waitFor("a new PID 1", 15*time.Second, func() bool {
		r, err := e.statusErr(g.name)
		return err == nil && r.State == "running" && r.PID != 0 && r.PID != before.PID
	})
	// And a stop loading the broken file works from the state.
	e.mustRun("", "--pipeline-file", file, "stop", g.name)
	e.clean(g.name)
}

// TestHomeThroughASymlink: a home reached through a symlink (/opt a link
// to /srv/opt, say) boots and stops clean: the kernel's mount table
// names the root mount by the path the symlink resolves to.
func TestHomeThroughASymlink(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("lnk", nil)
	link := filepath.Join(t.TempDir(), "home-link")
	if err := os.Symlink(g.home, link); err != nil {
		t.Fatal(err)
	}
	g.home = link
	g.boot()
	if r := e.status(g.name); r.State != "running" {
		t.Errorf("state %s, want running", r.State)
	}
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}

// TestForcedUnmountOnAnOwnRoot: a guest whose root is its own file system
// (a loop device's) may force an unmount (Debian's shutdown does), which
// reaches no host mount there; on a host directory's bind it may not
// (plugins/init's TestGuard).
func TestForcedUnmountOnAnOwnRoot(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("fum", nil)
	g.boot()
	out := g.mustEnter("sh", "-c", "mkdir -p /tmp/f && mount -t tmpfs t /tmp/f && umount -f /tmp/f && echo FORCED-OK")
	if !strings.Contains(out, "FORCED-OK") {
		t.Errorf("umount -f inside: %q", out)
	}
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}
