// Command devprobe stands in for subhost-init in the device cgroup's
// tests: run as the guest's PID 1, it tries the devices the guest may use
// and those it must not reach, by every way a root guest has (its /dev,
// nodes in its own image, a devtmpfs, mknod, its cgroup's own files), and
// writes each result to /devprobe.json.
//
// /devprobe.conf (JSON) names the boot record's read-only disk (its
// first bytes are "devprobe marker"), its read-write disk, and a host
// loop device of the test's that is not in the boot record. Every open
// of a device that must be refused is read-only, and nothing is made,
// written or removed in the devtmpfs (the host's /dev): were a refusal
// missing, the probe would have read from the test's own loop device or
// opened and closed a host device, nothing more.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

type config struct {
	RO    string `json:"ro"`    // guest name of the read-only disk
	RW    string `json:"rw"`    // guest name of the read-write disk
	Other string `json:"other"` // host name (in /dev) of a loop device not given
	// HostDisk is the host name of the disk holding the host's root,
	// when there is one.
	HostDisk string `json:"host_disk,omitempty"`
}

func res(err error) string {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// open opens path with flags and closes it again.
func open(path string, flags int) string {
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err == nil {
		unix.Close(fd)
	}
	return res(err)
}

func write(path, s string) string {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return res(err)
	}
	_, err = f.WriteString(s)
	f.Close()
	return res(err)
}

func main() {
	r := map[string]string{}
	defer func() {
		b, _ := json.MarshalIndent(r, "", " ")
		os.WriteFile("/devprobe.json.tmp", b, 0o644)
		os.Rename("/devprobe.json.tmp", "/devprobe.json")
		os.Exit(0)
	}()
	var cfg config
	b, err := os.ReadFile("/devprobe.conf")
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		r["config"] = res(err)
		return
	}

	// The guest's own /dev.
	r["null"] = write("/dev/null", "x")
	r["zero"] = open("/dev/zero", unix.O_RDONLY)
	r["urandom"] = open("/dev/urandom", unix.O_RDONLY)
	r["tty"] = open("/dev/tty", unix.O_RDWR) // PID 1's controlling terminal, the console
	r["console"] = write("/dev/console", "devprobe: console ok\n")
	r["ptmx"], r["pts"] = pty()
	if fd, err := unix.Open("/dev/"+cfg.RO, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		r["ro-read"] = res(err)
	} else {
		buf := make([]byte, 15)
		n, err := unix.Pread(fd, buf, 0)
		r["ro-read"] = res(err) + " " + string(buf[:max(n, 0)])
		unix.Close(fd)
	}
	r["ro-write"] = open("/dev/"+cfg.RO, unix.O_WRONLY)
	r["ro-rdwr"] = open("/dev/"+cfg.RO, unix.O_RDWR)
	r["rw-rdwr"] = open("/dev/"+cfg.RW, unix.O_RDWR)

	// Nodes that came in the guest's image (the test made them in the
	// root): the host's loop device, loop-control, the host's console.
	for _, n := range []string{"other", "loop-control", "console"} {
		r["image-"+n] = open("/image-nodes/"+n, unix.O_RDONLY)
	}

	// mknod: characters devices of the list, yes; others, no.
	r["mknod-null"] = res(unix.Mknod("/dev/null2", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	if r["mknod-null"] == "ok" {
		r["mknod-null"] = write("/dev/null2", "x")
	}
	r["mknod-tun"] = res(unix.Mknod("/dev/tun2", unix.S_IFCHR|0o600, int(unix.Mkdev(10, 200))))
	r["mknod-loop-control"] = res(unix.Mknod("/dev/loop-control", unix.S_IFCHR|0o600, int(unix.Mkdev(10, 237))))
	r["mknod-console"] = res(unix.Mknod("/dev/hostconsole", unix.S_IFCHR|0o600, int(unix.Mkdev(5, 1))))
	r["mknod-kmsg"] = res(unix.Mknod("/dev/kmsg", unix.S_IFCHR|0o600, int(unix.Mkdev(1, 11))))

	// A devtmpfs: every host device, none of which opens.
	os.Mkdir("/x", 0o755)
	r["mount-devtmpfs"] = res(unix.Mount("none", "/x", "devtmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, ""))
	if r["mount-devtmpfs"] == "ok" {
		for key, n := range map[string]string{"other": cfg.Other, "host-disk": cfg.HostDisk,
			"loop-control": "loop-control", "console": "console", "kmsg": "kmsg"} {
			if n != "" {
				r["devtmpfs-"+key] = open("/x/"+n, unix.O_RDONLY)
			}
		}
		unix.Unmount("/x", unix.MNT_DETACH)
	}

	cgroups()
	// Still refused after every attempt to widen the list.
	r["image-other-after"] = open("/image-nodes/other", unix.O_RDONLY)
	r["mknod-loop-control-after"] = res(unix.Mknod("/dev/loop-control", unix.S_IFCHR|0o600, int(unix.Mkdev(10, 237))))

	// cgroups sets the result of what it tries.
	for k, v := range cgroupResults {
		r[k] = v
	}
}

var cgroupResults = map[string]string{}

// cgroups looks at the guest's cgroups from inside: its cgroup namespace,
// its device cgroup's list, attempts to widen it, and the other
// hierarchies' roots.
func cgroups() {
	r := cgroupResults
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		r["proc-cgroup"] = res(err)
		return
	}
	r["proc-cgroup"] = string(b)
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		dir := fmt.Sprintf("/cg%d", i)
		os.Mkdir(dir, 0o755)
		var err error
		if f[0] == "0" {
			err = unix.Mount("none", dir, "cgroup2", 0, "")
		} else {
			err = unix.Mount("none", dir, "cgroup", 0, f[1])
		}
		name := f[1]
		if name == "" {
			name = "cgroup2"
		}
		if err != nil {
			r["mount-"+name] = res(err)
			continue
		}
		r["mount-"+name] = "ok"
		// What the guest sees of the hierarchy: its root's entries.
		var dirs []string
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() {
				dirs = append(dirs, e.Name())
			}
		}
		r["dirs-"+name] = strings.Join(dirs, ",")
		if _, err := os.Stat(filepath.Join(dir, "release_agent")); err == nil {
			r["release_agent-"+name] = "visible"
		}
		if slices.Contains(strings.Split(f[1], ","), "devices") {
			devices(dir)
		}
		unix.Unmount(dir, unix.MNT_DETACH)
	}
}

// devices tries to widen the guest's device list through its device
// cgroup, mounted at dir, and through a child cgroup of its own, into
// which it moves (Down must remove that too).
func devices(dir string) {
	r := cgroupResults
	b, _ := os.ReadFile(filepath.Join(dir, "devices.list"))
	r["devices.list"] = string(b)
	r["allow-all"] = write(filepath.Join(dir, "devices.allow"), "a")
	r["allow-loop-control"] = write(filepath.Join(dir, "devices.allow"), "c 10:237 rwm")
	r["allow-all-blocks"] = write(filepath.Join(dir, "devices.allow"), "b *:* rwm")
	sub := filepath.Join(dir, "sub")
	r["mkdir-sub"] = res(os.Mkdir(sub, 0o755))
	r["join-sub"] = write(filepath.Join(sub, "cgroup.procs"), "0")
	r["sub-allow-all"] = write(filepath.Join(sub, "devices.allow"), "a")
	r["sub-allow-loop-control"] = write(filepath.Join(sub, "devices.allow"), "c 10:237 rwm")
	b, _ = os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, ":devices:") {
			r["devices-cgroup-after-join"] = line
		}
	}
}

// pty opens a new pty in the guest's devpts and its slave.
func pty() (string, string) {
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return res(err), ""
	}
	defer unix.Close(m)
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		return "unlock: " + res(err), ""
	}
	n, err := unix.IoctlGetUint32(m, unix.TIOCGPTN)
	if err != nil {
		return "TIOCGPTN: " + res(err), ""
	}
	return "ok", open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR)
}
