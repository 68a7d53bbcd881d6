package testguest

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Busybox is the static busybox copied into guest roots.
const Busybox = "/bin/busybox"

// Root is a busybox guest root on disk, being put together by a test.
type Root struct {
	// Dir is the root's directory on the host.
	Dir   string
	t     testing.TB
	extra []string // lines run by rcS before its markers
}

// rcS is the guest's /etc/init.d/rcS: the standard mounts when subhost-init
// has not done them already, lo up, the test's own lines (%s), markers.
const rcS = `#!/bin/sh
# rcS of a subhost test guest (internal/testguest)
PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH
# (Debian's busybox-static has no "mountpoint" applet)
ismnt() { grep -q "^[^ ]* $1 " /proc/mounts 2>/dev/null; }
ismnt /proc || mount -t proc -o nosuid,nodev,noexec proc /proc
ismnt /sys  || mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys 2>/dev/null
ismnt /run  || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
ismnt /tmp  || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
ip link set lo up
# --- test lines ---
%s
# --- markers ---
: >/root/rcS-ran
: >/run/ready-rcS
echo "testguest: rcS done"
exit 0
`

// rc is the guest's /etc/init.d/rc RUNLEVEL.
const rc = `#!/bin/sh
# rc RUNLEVEL of a subhost test guest: K* scripts with "stop", then S*
# scripts with "start" ("stop" for runlevels 0 and 6, as Debian's rc does)
PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH
rl=${1:?runlevel}
: >/root/rc$rl-ran
echo "testguest: rc $rl"
act=start
case "$rl" in 0|6) act=stop ;; esac
for s in /etc/rc$rl.d/K*; do [ -x "$s" ] && "$s" stop; done
for s in /etc/rc$rl.d/S*; do [ -x "$s" ] && "$s" $act; done
exit 0
`

// BusyboxRoot builds a busybox guest root in dir (created, or empty): the
// static busybox with one symlink per applet, rcS and rc (see the package
// doc), passwd and group, and no /etc/hostname, so the guest's hostname is
// the one subhost gives it. It fails the test when /bin/busybox is not a
// static binary (apt-get install busybox-static).
func BusyboxRoot(t testing.TB, dir string) *Root {
	t.Helper()
	if err := checkStatic(Busybox); err != nil {
		t.Fatalf("testguest: %v (apt-get install busybox-static)", err)
	}
	r := &Root{Dir: dir, t: t}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc/init.d", "etc/rc0.d", "etc/rc2.d", "etc/rc6.d",
		"proc", "sys", "dev", "run", "tmp", "root", "var/log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("testguest: %v", err)
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	os.Chmod(filepath.Join(dir, "root"), 0o700)
	if err := os.Symlink("../run", filepath.Join(dir, "var/run")); err != nil {
		t.Fatalf("testguest: %v", err)
	}
	bb, err := os.ReadFile(Busybox)
	if err != nil {
		t.Fatalf("testguest: %v", err)
	}
	r.WriteFile("bin/busybox", string(bb), 0o755)

	list, err := exec.Command(Busybox, "--list-full").Output()
	if err != nil {
		t.Fatalf("testguest: %s --list-full: %v", Busybox, err)
	}
	applets := strings.Fields(string(list))
	// The essentials, should --list-full miss any.
	for _, a := range []string{"sh", "mount", "umount", "ip", "hostname", "poweroff", "halt", "reboot", "grep", "sleep", "cat", "httpd", "wget", "nc"} {
		applets = append(applets, "bin/"+a)
	}
	for _, p := range applets {
		if p == "bin/busybox" {
			continue
		}
		link := filepath.Join(dir, p)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Fatalf("testguest: %v", err)
		}
		rel, err := filepath.Rel(filepath.Dir("/"+p), "/bin/busybox")
		if err != nil {
			t.Fatalf("testguest: %v", err)
		}
		if err := os.Symlink(rel, link); err != nil {
			t.Fatalf("testguest: %v", err)
		}
	}

	r.writeRcS()
	r.WriteFile("etc/init.d/rc", rc, 0o755)
	r.WriteFile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644)
	r.WriteFile("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)
	r.WriteFile("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", 0o644)
	r.WriteFile("etc/os-release", "NAME=\"subhost test busybox\"\nID=busybox\n", 0o644)
	r.WriteFile("etc/fstab", "", 0o644)
	return r
}

// RcS appends shell lines to rcS, run after the standard mounts and before
// the markers (so /run/ready-rcS means they have run). A line that starts
// a server must background it.
func (r *Root) RcS(lines ...string) *Root {
	r.t.Helper()
	r.extra = append(r.extra, lines...)
	r.writeRcS()
	return r
}

// Script writes an rc script /etc/rc<level>.d/<name> (e.g. "S10hang"),
// mode 0755, with body after a #!/bin/sh line.
func (r *Root) Script(level int, name, body string) *Root {
	r.t.Helper()
	return r.WriteFile(fmt.Sprintf("etc/rc%d.d/%s", level, name), "#!/bin/sh\n"+body+"\n", 0o755)
}

// WriteFile writes a file at rel (relative to the root), creating its
// parent directories.
func (r *Root) WriteFile(rel, content string, mode os.FileMode) *Root {
	r.t.Helper()
	p := filepath.Join(r.Dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatalf("testguest: %v", err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		r.t.Fatalf("testguest: %v", err)
	}
	if err := os.Chmod(p, mode); err != nil {
		r.t.Fatalf("testguest: %v", err)
	}
	return r
}

// Path is rel inside the root, on the host.
func (r *Root) Path(rel string) string { return filepath.Join(r.Dir, rel) }

func (r *Root) writeRcS() {
	r.t.Helper()
	r.WriteFile("etc/init.d/rcS", fmt.Sprintf(rcS, strings.Join(r.extra, "\n")), 0o755)
}

// checkStatic fails unless path is a statically linked ELF executable: a
// dynamic one would not run inside a guest root without its libraries.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}

// Serve adds rcS lines that put cidr on dev (up) and start busybox httpd
// on port 80 serving /www: /www/index.html holds the hostname and /www/boot
// a random id new at every boot, so a test can tell a rebooted guest.
func (r *Root) Serve(dev, cidr string) *Root {
	r.t.Helper()
	return r.RcS(
		fmt.Sprintf("ip addr add %s dev %s && ip link set %s up", cidr, dev, dev),
		"mkdir -p /www && hostname >/www/index.html && cat /proc/sys/kernel/random/uuid >/www/boot",
		"httpd -p 80 -h /www",
	)
}

// ConsoleShell adds an rcS line that starts a command loop on the console
// (a guest under sysv mode has no getty): each line typed is evaluated by
// a non-interactive shell, its output shown on the console. (An
// interactive shell would ignore SIGTERM and hold every power off for
// subhost-init's whole grace period.)
func (r *Root) ConsoleShell() *Root {
	r.t.Helper()
	return r.RcS(`sh -c 'while read -r l; do eval "$l"; done' </dev/console >/dev/console 2>&1 &`)
}
