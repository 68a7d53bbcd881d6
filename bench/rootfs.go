package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// MarkerPath is the file, inside the guest root, whose appearance means
// that rcS has run to its end.
const MarkerPath = "bench/ready"

// rcS is the same for the floor and for subhost. It mounts what the guest
// lacks (under subhost and the floor, /proc, /sys and /run are mounted
// already, so only /tmp is), brings up lo and writes the marker last.
// There is no /etc/hostname: the hostname is the subhost's name.
const rcS = `#!/bin/sh
# rcS of the subhost benchmark guest
echo "rcS: start"
PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH
ismnt() { grep -q "^[^ ]* $1 " /proc/mounts 2>/dev/null; }
ismnt /proc || mount -t proc -o nosuid,nodev,noexec proc /proc
ismnt /sys  || mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys 2>/dev/null
ismnt /run  || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
ismnt /tmp  || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
ip link set lo up
: >/bench/ready
exit 0
`

// rc runs a runlevel's scripts; the benchmark guest has none, but
// subhost-init runs rc 2 after rcS and rc 0 at power off, as on Debian.
const rc = `#!/bin/sh
# rc RUNLEVEL: K* scripts with "stop", then S* scripts with "start"
PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH
rl=${1:?runlevel}
act=start
case "$rl" in 0|6) act=stop ;; esac
for s in /etc/rc$rl.d/K*; do [ -x "$s" ] && "$s" stop; done
for s in /etc/rc$rl.d/S*; do [ -x "$s" ] && "$s" $act; done
exit 0
`

// buildRootfs makes a minimal busybox root in dir (which must not exist):
// /bin/busybox and one link per applet where busybox says it lives, rcS
// and rc, the usual empty mount points, /bench for the marker, and the
// few files in /etc that tools expect.
func buildRootfs(dir, busybox string) error {
	if err := checkStatic(busybox); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc/init.d", "etc/rc0.d", "etc/rc2.d", "etc/rc6.d",
		"proc", "sys", "dev", "run", "tmp", "root", "var/log", "bench"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(dir, "root"), 0o700); err != nil {
		return err
	}
	if err := os.Symlink("../run", filepath.Join(dir, "var/run")); err != nil {
		return err
	}
	if err := copyFile(busybox, filepath.Join(dir, "bin/busybox"), 0o755); err != nil {
		return err
	}

	// One relative link per applet, where busybox itself puts it.
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("%s --list-full: %w", busybox, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || p == "bin/busybox" || strings.Contains(p, "..") {
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		rel, err := filepath.Rel("/"+filepath.Dir(p), "/bin/busybox")
		if err != nil {
			return err
		}
		if err := os.Symlink(rel, filepath.Join(dir, p)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	// The essentials, should --list-full miss any.
	for _, a := range []string{"sh", "mount", "umount", "ip", "hostname", "grep", "sleep", "cat"} {
		if !exists(filepath.Join(dir, "bin", a)) && !exists(filepath.Join(dir, "sbin", a)) {
			if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
				return err
			}
		}
	}

	files := []struct {
		path, text string
		mode       os.FileMode
	}{
		{"etc/init.d/rcS", rcS, 0o755},
		{"etc/init.d/rc", rc, 0o755},
		{"etc/os-release", "NAME=\"subhost-bench busybox\"\nID=busybox\nPRETTY_NAME=\"subhost benchmark busybox root\"\n", 0o644},
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644},
		{"etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644},
		{"etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", 0o644},
		{"etc/fstab", "", 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.path), []byte(f.text), f.mode); err != nil {
			return err
		}
		// WriteFile's mode is filtered by the umask.
		if err := os.Chmod(filepath.Join(dir, f.path), f.mode); err != nil {
			return err
		}
	}
	return nil
}

// checkStatic refuses a dynamically linked busybox: the guest root has no
// libraries.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("busybox %q: %w (apt-get install busybox-static)", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("busybox %q is dynamically linked (apt-get install busybox-static)", path)
		}
	}
	return nil
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
