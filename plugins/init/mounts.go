package main

import (
	"fmt"
	"path"
	"strings"

	"github.com/subhost/subhost/sdk"
)

// mountsVar is the config array of data disks the host mounts into the
// guest: ( DEV:PATH[:ro] ... ). It is init's, not a mount stage's: the
// file system is mounted detached by the host (a guest in a user
// namespace cannot mount a block device), idmapped like the root when
// the guest is unprivileged, and attached by the launcher inside the
// guest's own mount namespace, on a directory opened inside the guest
// root. So it never appears in the host's mount table, needs no Down,
// and goes with the guest's mount namespace; and only init has both the
// guest's user namespace and its root at hand when it boots.
const mountsVar = "MOUNTS"

// dataMount is one parsed MOUNTS element.
type dataMount struct {
	Elem     string // as written, for messages
	Dev      string // a guest device name from DISKS: vdb1, or vdb for partition 0
	Path     string // absolute, clean, inside the guest
	ReadOnly bool
}

// reservedMountPaths are the guest paths the launcher mounts itself.
var reservedMountPaths = []string{"/proc", "/sys", "/dev", "/run"}

// parseMounts reads MOUNTS. Every bad element is one line naming it; the
// lines are joined into one invalid-config error.
func parseMounts(sub *sdk.Subhost) ([]dataMount, error) {
	devs := diskDevices(sub.Array("DISKS"))
	var out []dataMount
	var bad []string
	seen := map[string]bool{}
	for _, elem := range sub.Array(mountsVar) {
		m, err := parseMount(elem, devs)
		if err == nil && seen[m.Path] {
			err = fmt.Errorf("%s is mounted twice", m.Path)
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: MOUNTS element %q: %v", sub.Where(mountsVar), elem, err))
			continue
		}
		seen[m.Path] = true
		out = append(out, m)
	}
	if len(bad) > 0 {
		return nil, sdk.Invalidf("%s", strings.Join(bad, "\n"))
	}
	return out, nil
}

func parseMount(elem string, devs map[string]bool) (dataMount, error) {
	parts := strings.Split(elem, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return dataMount{}, fmt.Errorf("want DEV:PATH or DEV:PATH:ro")
	}
	m := dataMount{Elem: elem, Dev: parts[0], Path: parts[1]}
	if len(parts) == 3 {
		if parts[2] != "ro" {
			return m, fmt.Errorf("option %q: the only option is ro", parts[2])
		}
		m.ReadOnly = true
	}
	if !devs[m.Dev] {
		return m, fmt.Errorf("%q is not a data disk device from DISKS (a partition such as vdb1, or vdb for partition 0; not the root's)", m.Dev)
	}
	if !path.IsAbs(m.Path) || path.Clean(m.Path) != m.Path || strings.ContainsAny(m.Path, "\x00\n") {
		return m, fmt.Errorf("path %q: want an absolute, clean path inside the guest", m.Path)
	}
	if m.Path == "/" {
		return m, fmt.Errorf("path /: the root is the root disk's")
	}
	for _, r := range reservedMountPaths {
		if m.Path == r || strings.HasPrefix(m.Path, r+"/") {
			return m, fmt.Errorf("path %s: %s is the guest's own %s, mounted by subhost", m.Path, r, strings.TrimPrefix(r, "/"))
		}
	}
	return m, nil
}

// diskDevices names the guest devices DISKS gives that may hold a data
// file system: each element's partition node (dev+part, or dev for
// partition 0), but not the first element's, which is the root.
func diskDevices(disks []string) map[string]bool {
	out := map[string]bool{}
	for i, d := range disks {
		f := strings.SplitN(d, ":", 3)
		if i == 0 || len(f) != 3 || f[0] == "" {
			continue
		}
		if f[1] == "0" {
			out[f[0]] = true
		} else {
			out[f[0]+f[1]] = true
		}
	}
	return out
}
