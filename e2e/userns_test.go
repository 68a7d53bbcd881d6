package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/subhost/subhost/internal/testguest"
)

// unprivileged turns g into a PRIVATE_USERS=pick guest whose root is
// imaged with the given partition table, with two data disks mounted by
// MOUNTS: vdb1 read-write on /srv/data, vdc (a bare file system) :ro on
// /srv/ro.
func (g *guest) unprivileged(table, privateUsers string) {
	t := g.e.t
	t.Helper()
	img := testguest.Image(t, g.root.Dir, table)
	data := func(marker, table string) string {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, "hello"), []byte(marker+"\n"), 0o644)
		return testguest.Image(t, d, table)
	}
	g.config = fmt.Sprintf("DISKS=( vda:1:%s vdb:1:%s vdc:0:%s )\nMOUNTS=( vdb1:/srv/data vdc:/srv/ro:ro )\nBRIDGES=( br0:%s )\nPRIVATE_USERS=%s",
		img, data("data-disk", "mbr"), data("ro-disk", "none"), g.mac, privateUsers)
	g.home = g.e.home(g.config)
}

// idMap returns the guest's "0 BASE SIZE" uid map line.
func (g *guest) idMap() (base, size int) {
	g.e.t.Helper()
	var zero int
	fmt.Sscan(g.mustEnter("cat", "/proc/self/uid_map"), &zero, &base, &size)
	if zero != 0 {
		g.e.t.Fatalf("uid_map does not start at guest uid 0")
	}
	return base, size
}

// TestUnprivilegedPretendBoot: with PRIVATE_USERS=pick a busybox guest
// boots from an MBR or a GPT image as root of its own user namespace; it
// configures its own eth0 (its netns belongs to that namespace) and
// serves; `enter` runs as its root; files it makes are uid 0 on the
// image; MOUNTS gives it its data disks (rw and ro); host-wide knobs and
// devices are out of its reach; poweroff from inside tears it all down.
func TestUnprivilegedPretendBoot(t *testing.T) {
	for _, table := range []string{"mbr", "gpt"} {
		t.Run(table, func(t *testing.T) {
			e := newEnv(t)
			g := e.newGuest("u"+table, nil)
			g.unprivileged(table, "pick")
			g.boot()
			g.serves()

			base, size := g.idMap()
			if base == 0 || size != 65536 {
				t.Fatalf("uid_map: 0 %d %d, want a non-zero host range of 65536", base, size)
			}
			if got := g.mustEnter("id", "-u"); strings.TrimSpace(got) != "0" {
				t.Errorf("enter runs as uid %q, want the guest's root", got)
			}
			// A host process that joined the guest's network namespace
			// and dropped root is a host nobody to the guest, as the
			// host's root is: its request is refused all the same.
			if got := enterAsDroppedHostUser(t, e.status(g.name).PID, 1000, "touch", "/root/dropped-host-user"); !strings.Contains(got, "refused") {
				t.Errorf("a host uid 1000 in the guest's network namespace asked to run a command: %s, want refused", got)
			}
			if strings.Contains(g.mustEnter("ls", "/root"), "dropped-host-user") {
				t.Errorf("a host uid 1000 in the guest's network namespace ran a command as the guest's root")
			}
			out, _, _ := e.run("status", "--json", g.name)
			var st struct {
				Userns *struct{ Base, Size int } `json:"userns"`
			}
			if json.Unmarshal([]byte(out), &st); st.Userns == nil || st.Userns.Base != base || st.Userns.Size != size {
				t.Errorf("status --json userns = %+v, want base %d size %d", st.Userns, base, size)
			}
			if out, _, _ := e.run("status", g.name); !strings.Contains(out, fmt.Sprintf("unprivileged (guest uid 0 = host uid %d)", base)) {
				t.Errorf("status does not say the guest is unprivileged:\n%s", out)
			}

			// Files: the image's are root's inside, and what the guest's
			// root makes is uid 0 on the image (idmapped, never chowned).
			if got := strings.TrimSpace(g.mustEnter("stat", "-c", "%u:%g", "/bin/busybox")); got != "0:0" {
				t.Errorf("inside, /bin/busybox is owned by %s, want 0:0", got)
			}
			g.mustEnter("sh", "-c", "echo made >/root/made-inside")
			var fst syscall.Stat_t
			if err := syscall.Stat(filepath.Join(g.home, "live/root/made-inside"), &fst); err != nil || fst.Uid != 0 || fst.Gid != 0 {
				t.Errorf("a file the guest's root made: %d:%d on the image (%v), want 0:0", fst.Uid, fst.Gid, err)
			}
			if err := syscall.Stat(filepath.Join(g.home, "live/bin/busybox"), &fst); err != nil || fst.Uid != 0 {
				t.Errorf("the image's bin/busybox changed owner: %d (%v)", fst.Uid, err)
			}

			// MOUNTS: read-write and read-only data disks.
			if got := g.mustEnter("cat", "/srv/data/hello"); got != "data-disk\n" {
				t.Errorf("/srv/data/hello = %q", got)
			}
			g.mustEnter("sh", "-c", "echo w >/srv/data/written && chown 0:0 /srv/data/written")
			if got := g.mustEnter("cat", "/srv/ro/hello"); got != "ro-disk\n" {
				t.Errorf("/srv/ro/hello = %q", got)
			}
			if out, code := g.enter("sh", "-c", "echo x >/srv/ro/x"); code == 0 {
				t.Errorf("writing to the :ro MOUNTS disk worked: %s", out)
			}
			// The host has vdb1 and vdc mounted: the guest may read them
			// (and vdb, whose partition vdb1 is) raw, not write them.
			for _, dev := range []string{"vdb1", "vdb", "vdc"} {
				if out, _ := g.enter("sh", "-c", "exec 3<>/dev/"+dev+" && echo OPENED-RW"); strings.Contains(out, "OPENED-RW") {
					t.Errorf("/dev/%s, mounted by the host, opened read-write inside", dev)
				}
				if got := strings.TrimSpace(g.mustEnter("sh", "-c", "head -c 512 /dev/"+dev+" | wc -c")); got != "512" {
					t.Errorf("/dev/%s read raw inside: %s bytes, want 512", dev, got)
				}
			}

			// Probes that must fail from inside.
			for _, probe := range []string{
				"echo '|/bin/true' >/proc/sys/kernel/core_pattern",
				"echo /bin/true >/proc/sys/kernel/modprobe",
				"echo 10 >/proc/sys/vm/swappiness",
				"mkdir -p /tmp/p && mount -t proc proc /tmp/p && echo 10 >/tmp/p/sys/vm/swappiness",
				"mkdir -p /tmp/s && mount -t sysfs sysfs /tmp/s && echo 1 >/tmp/s/kernel/mm/ksm/run",
				"mknod /tmp/sda b 8 0",
				"mkdir -p /tmp/d && mount -t devtmpfs devtmpfs /tmp/d",
				"mknod /tmp/kmsg c 1 11 && cat /tmp/kmsg",
				"cat /dev/kmsg",
				"dd if=/dev/vda of=/dev/null bs=512 count=1 && printf x >/dev/vda",
			} {
				out, code := g.enter("sh", "-c", probe)
				t.Logf("probe %q: exit %d: %s", probe, code, strings.TrimSpace(out))
				if code == 0 {
					t.Errorf("from inside an unprivileged guest, %q worked: %s", probe, out)
				}
			}
			// core_pattern really is unchanged on the host.
			if b, _ := os.ReadFile("/proc/sys/kernel/core_pattern"); strings.Contains(string(b), "/bin/true") {
				t.Errorf("host core_pattern changed: %s", b)
			}

			g.enter("poweroff")
			e.clean(g.name)
		})
	}
}

// TestUnprivilegedRangesAndReboot: two picked guests get disjoint
// ranges; a guest keeps its range across a reboot from inside; an
// explicit range overlapping a running guest's is refused with exit 2
// and nothing made.
func TestUnprivilegedRangesAndReboot(t *testing.T) {
	e := newEnv(t)
	a := e.newGuest("usra", nil)
	a.unprivileged("mbr", "pick")
	b := e.newGuest("usrb", nil)
	b.unprivileged("mbr", "pick")
	a.boot()
	b.boot()
	baseA, sizeA := a.idMap()
	baseB, sizeB := b.idMap()
	if baseA < baseB+sizeB && baseB < baseA+sizeA {
		t.Errorf("two picked ranges overlap: %d+%d and %d+%d", baseA, sizeA, baseB, sizeB)
	}

	c := e.newGuest("usrc", nil)
	c.unprivileged("mbr", fmt.Sprint(baseA+100))
	_, er, code := e.inNet(c.ns, c.runArgs("--detach")...)
	if code != 2 || !strings.Contains(er, "PRIVATE_USERS") {
		t.Errorf("an explicit range over %s's: exit %d, %q; want exit 2 naming PRIVATE_USERS", a.name, code, er)
	}
	if _, err := os.Lstat("/run/netns/" + c.name); err == nil {
		t.Errorf("the refused guest's netns exists")
	}

	pid := e.status(a.name).PID
	a.enter("reboot")
	e.waitFor(a.name+" to boot again", 20e9, func() bool {
		r, err := e.statusErr(a.name)
		return err == nil && r.PID != 0 && r.PID != pid && r.State == "running"
	})
	a.waitReady()
	if base, _ := a.idMap(); base != baseA {
		t.Errorf("after a reboot the range is %d, was %d", base, baseA)
	}
	a.serves()
	for _, g := range []*guest{a, b} {
		e.mustRun("", "stop", g.name)
		e.clean(g.name)
	}
}

// TestPrivilegedMounts: MOUNTS works for a privileged guest too.
func TestPrivilegedMounts(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("pmnt", nil)
	g.unprivileged("mbr", "no")
	g.boot()
	if got := g.mustEnter("cat", "/srv/data/hello", "/srv/ro/hello"); got != "data-disk\nro-disk\n" {
		t.Errorf("MOUNTS in a privileged guest: %q", got)
	}
	g.mustEnter("sh", "-c", "echo w >/srv/data/written")
	if out, code := g.enter("sh", "-c", "echo x >/srv/ro/x"); code == 0 {
		t.Errorf("writing to the :ro MOUNTS disk worked: %s", out)
	}
	if out, _, _ := e.run("status", g.name); !strings.Contains(out, "privileged (guest uid 0 = host uid 0)") {
		t.Errorf("status does not say the guest is privileged:\n%s", out)
	}
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}

// TestControlUnprivileged: the control pipeline's rbind of root with
// PRIVATE_USERS=pick: the shell runs as the root of its user namespace,
// what it writes is uid 0 on the host, and it hibernates and re-enters
// with the same range.
func TestControlUnprivileged(t *testing.T) {
	e := newEnv(t)
	c := newControlTree(e)
	n := e.name("uctl")
	h := c.home(n, "PRIVATE_USERS=pick")
	c.busybox(filepath.Join("subhosts", n, "root"))

	script := "cat /proc/self/uid_map; echo mark >/root/mark; exit\n"
	first := c.session("", n, script)
	var fst syscall.Stat_t
	if err := syscall.Stat(filepath.Join(h, "root/root/mark"), &fst); err != nil || fst.Uid != 0 {
		t.Errorf("the shell's file on the host: uid %d (%v), want 0", fst.Uid, err)
	}
	c.hibernating(n, h)
	// The pinned user namespace is under the runner's state root.
	if pins, _ := filepath.Glob(filepath.Join(e.state, ".userns", n+".*")); len(pins) != 1 {
		t.Errorf("pins of %s under the state root %s: %v, want one", n, e.state, pins)
	}
	again := c.session("", n, script)
	if m := mapLine(first); m == "" || m != mapLine(again) {
		t.Errorf("uid map before and after hibernation: %q, %q; want one unprivileged range", m, mapLine(again))
	}
	c.hibernating(n, h)
	c.stop("", n, h)
	if pins, _ := filepath.Glob(filepath.Join(e.state, ".userns", n+".*")); len(pins) != 0 {
		t.Errorf("stop left pins: %v", pins)
	}
}

// mapLine finds the unprivileged "0 BASE SIZE" line of a uid_map in a
// session's output.
func mapLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "0" && f[1] != "0" {
			return strings.Join(f, " ")
		}
	}
	return ""
}

// TestControlUnprivilegedOverlay: the control pipeline with BASE (two
// lower directories) and PRIVATE_USERS=pick, the upper layer in HOME/root
// or in NAME.img: the overlay is assembled inside the guest's user
// namespace over idmapped layers. The shell is its root and sees both
// lower layers; what it creates, changes (a copy-up) and removes (a
// whiteout) lands in the upper directory as uid 0 (and runs from there),
// nothing is chowned,
// the lower directories are unchanged; it hibernates and re-enters with
// the same range and its files; stop leaves nothing.
func TestControlUnprivilegedOverlay(t *testing.T) {
	for _, variant := range []string{"dirs", "image"} {
		t.Run(variant, func(t *testing.T) {
			e := newEnv(t)
			c := newControlTree(e)
			n := e.name("uovl")
			base := c.busybox("base")
			base.WriteFile("etc/layer", "bottom\n", 0o644)
			base.WriteFile("etc/gone", "removed by the guest\n", 0o644)
			top := filepath.Join(c.scratch, "top")
			if err := os.MkdirAll(filepath.Join(top, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(top, "etc/layer"), []byte("top\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			before := []string{treeSummary(t, base.Dir), treeSummary(t, top)}
			config := "BASE=" + top + ":" + base.Dir + "\nPRIVATE_USERS=pick"
			var h, upper string
			if variant == "dirs" {
				h = c.home(n, config, "root", "work")
				upper = filepath.Join(h, "root")
			} else {
				h = c.home(n, config)
				upper = filepath.Join(h, "mnt/root")
				c.image(h, n)
			}

			first := c.session("", n, "cat /proc/self/uid_map; id -u; stat -c owner=%u /bin/busybox; cat /etc/layer; "+
				"echo mark >/root/mark; echo more >>/etc/layer; rm /etc/gone; mkdir -p /srv/new; "+
				"cp /bin/busybox /root/echo && /root/echo exec-from-upper; exit\n")
			for _, want := range []string{"\n0\n", "owner=0", "top", "\nexec-from-upper"} {
				if !strings.Contains(strings.ReplaceAll(first, "\r", ""), want) {
					t.Errorf("the shell's output lacks %q:\n%s", want, first)
				}
			}
			if opts := superOptions(filepath.Join(h, "live")); !strings.Contains(opts, "userxattr") {
				t.Errorf("live's overlay was not mounted inside the user namespace (no userxattr): %s", opts)
			}
			// On the host: uid 0 in the upper directory, never the range.
			for _, f := range []string{"root/mark", "etc/layer", "etc/gone", "srv/new", "sbin/subhost-init"} {
				var st syscall.Stat_t
				if err := syscall.Lstat(filepath.Join(upper, f), &st); err != nil {
					t.Errorf("upper %s: %v", f, err)
				} else if st.Uid != 0 || st.Gid != 0 {
					t.Errorf("upper %s is owned by %d:%d, want 0:0", f, st.Uid, st.Gid)
				}
			}
			var wh syscall.Stat_t
			if err := syscall.Lstat(filepath.Join(upper, "etc/gone"), &wh); err != nil || wh.Mode&syscall.S_IFMT != syscall.S_IFCHR || wh.Rdev != 0 {
				t.Errorf("upper etc/gone is not a whiteout (mode %o rdev %d): %v", wh.Mode, wh.Rdev, err)
			}
			if got := readFile(t, filepath.Join(upper, "etc/layer")); got != "top\nmore\n" {
				t.Errorf("the copied-up etc/layer holds %q", got)
			}
			if after := []string{treeSummary(t, base.Dir), treeSummary(t, top)}; !slices.Equal(before, after) {
				t.Errorf("a lower directory changed:\nbefore %q\nafter  %q", before, after)
			}

			c.hibernating(n, h)
			again := c.session("", n, "cat /proc/self/uid_map; cat /root/mark; ls /etc; exit\n")
			if m := mapLine(first); m == "" || m != mapLine(again) {
				t.Errorf("uid map before and after hibernation: %q, %q; want one unprivileged range", m, mapLine(again))
			}
			if !strings.Contains(again, "mark") || strings.Contains(again, "gone") {
				t.Errorf("after re-entry the guest's changes are not there:\n%s", again)
			}
			c.hibernating(n, h)
			c.stop("", n, h)
			if after := []string{treeSummary(t, base.Dir), treeSummary(t, top)}; !slices.Equal(before, after) {
				t.Errorf("a lower directory changed by the end")
			}
		})
	}
}

// treeSummary lists every file below dir with its type, mode, owner,
// size and modification time.
func treeSummary(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %o %d:%d %d %d.%d\n", p, st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
