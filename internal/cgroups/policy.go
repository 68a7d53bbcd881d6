package cgroups

import (
	"fmt"
	"slices"
	"strings"

	"github.com/subhost/subhost/sdk"
)

// Dir is the directory of every subhost's cgroups, under each
// hierarchy's root: Dir/NAME holds the policy, Dir/NAME/Guest the guest.
const (
	Dir   = "subhost"
	Guest = "guest"
)

// Standard is what every guest may use, beside its disks: the character
// devices of the /dev the init stage makes (all "rwm", so that the guest
// may make their nodes again), TUN and FUSE.
//
// Two that a container allow-list often holds are left out on purpose.
// c 5:1 is the kernel's console, the host's (a serial line or a virtual
// terminal, where root could read the host operator's keystrokes or
// TIOCSTI into its shell): the guest's /dev/console is the runner's pty,
// a 136:N node bound there. And nothing grants "m" for a block device:
// the launcher makes the disks' nodes before it joins the cgroup.
//
// c 136:* covers every pty slave of every devpts instance, the host's
// included; but a slave is reached only through its devpts dentry (the
// kernel finds the tty from the inode of the devpts it is opened in; a
// 136:N node made on any other filesystem fails with EIO), every mount
// of devpts is a new instance, and the only host devpts entry in the
// guest is its console.
var Standard = []string{
	"c 1:3 rwm",    // null
	"c 1:5 rwm",    // zero
	"c 1:7 rwm",    // full
	"c 1:8 rwm",    // random
	"c 1:9 rwm",    // urandom
	"c 5:0 rwm",    // tty
	"c 5:2 rwm",    // ptmx
	"c 136:* rwm",  // pts
	"c 10:200 rwm", // net/tun
	"c 10:229 rwm", // fuse
}

// Rules is a guest's allow-list, one devices.allow line each: Standard,
// then each disk, "r" when it is read-only, else "rw", never "m". Two
// entries for one device are merged as the kernel would (into "rw").
func Rules(disks []sdk.Device) []string {
	out := slices.Clone(Standard)
	at := map[string]int{}
	for _, d := range disks {
		key := fmt.Sprintf("b %d:%d", d.Major, d.Minor)
		acc := "rw"
		if d.ReadOnly {
			acc = "r"
		}
		if i, ok := at[key]; ok {
			if acc == "rw" {
				out[i] = key + " rw"
			}
			continue
		}
		at[key] = len(out)
		out = append(out, key+" "+acc)
	}
	return out
}

// HostMounted returns disks with the ones the host mounts for the guest
// read-only: each device the config's MOUNTS names (its elements are
// DEV:PATH[:ro]) and the whole disk it is a partition of. The host's
// kernel reads those file systems' metadata, and a guest writing the
// device under it (its root too, in an unprivileged guest) could feed it
// whatever it likes; the guest reads and writes through the mount.
func HostMounted(disks []sdk.Device, mounts []string) []sdk.Device {
	named := map[string]bool{}
	for _, m := range mounts {
		dev, _, _ := strings.Cut(m, ":")
		named[dev] = true
		named[strings.TrimRight(dev, "0123456789")] = true
	}
	out := slices.Clone(disks)
	for i := range out {
		if named[out[i].GuestName] {
			out[i].ReadOnly = true
		}
	}
	return out
}

// membership is one line of /proc/PID/cgroup: a hierarchy (its ID, 0 for
// cgroup v2, and its controllers, e.g. "cpu,cpuacct" or "name=systemd")
// and the process's cgroup in it.
type membership struct {
	id          string
	controllers []string
	path        string
}

func parseCgroupFile(s string) ([]membership, error) {
	var out []membership
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		id, rest, ok1 := strings.Cut(line, ":")
		ctrls, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || id == "" || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("/proc/self/cgroup: malformed line %q", line)
		}
		m := membership{id: id, path: path}
		if ctrls != "" {
			m.controllers = strings.Split(ctrls, ",")
		}
		out = append(out, m)
	}
	return out, nil
}

// v2 reports whether the line is the cgroup v2 (unified) hierarchy's.
func (m membership) v2() bool { return m.id == "0" && len(m.controllers) == 0 }

// matches reports whether a cgroup mount whose filesystem type and
// superblock options are given mounts this hierarchy.
func (m membership) matches(fstype, super string) bool {
	if m.v2() {
		return fstype == "cgroup2"
	}
	if fstype != "cgroup" || len(m.controllers) == 0 {
		return false
	}
	opts := strings.Split(super, ",")
	for _, c := range m.controllers {
		if !slices.Contains(opts, c) {
			return false
		}
	}
	return true
}

func (m membership) name() string {
	if m.v2() {
		return "cgroup2"
	}
	return strings.Join(m.controllers, ",")
}
