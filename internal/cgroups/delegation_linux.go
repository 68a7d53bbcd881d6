package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk"
)

// Leaf is the cgroup, below a delegated unit's, that the supervisor moves
// itself (and so every plugin it starts) into: cgroup v2 lets a cgroup
// that holds processes enable no controller for its children, and
// systemd runs a delegated unit's ExecStartPost=/ExecStop= in a .control
// cgroup beside it, so the unit's own cgroup must be an inner node.
const Leaf = "supervisor"

// followsUnit reports whether a delegated unit's cgroup holds the
// subhost's in h: the cgroup2 tree, where systemd tracks a unit's
// processes (also on hybrid hosts) and marks its delegation, and, on
// hybrid hosts, systemd's own name=systemd hierarchy, the other one whose
// unit subtree systemd hands over (CGROUP_DELEGATION.md). Not the v1
// controller hierarchies: the mark says nothing about them, systemd
// makes the unit's cgroup there only for the controllers it manages (not
// cpuset or freezer, so the guest would be split between places anyway),
// and there the limits and the v1 device policy stay where issue #10
// put them, at the fixed place.
func (h hierarchy) followsUnit() bool {
	return h.v2() || slices.Equal(h.controllers, []string{"name=systemd"})
}

// hierarchiesUnder lists the hierarchies as hierarchies does, each with
// Dir at its root, or, when parent is not "", below parent in those that
// follow a delegated unit. parent must be a clean absolute cgroup path,
// exist in the cgroup2 tree and be marked delegated there (Delegated):
// subhost never makes cgroups below one it was not given.
func hierarchiesUnder(parent string) ([]hierarchy, error) {
	hs, err := hierarchies()
	if err != nil {
		return nil, fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	if parent == "" {
		return hs, nil
	}
	if !validParent(parent) {
		return nil, fmt.Errorf("cgroup parent %q: not a clean absolute cgroup path below the root", parent)
	}
	found := false
	for i, h := range hs {
		if h.mount == "" || !h.followsUnit() {
			continue
		}
		base := filepath.Join(h.mount, parent)
		if !h.v2() {
			// name=systemd: where systemd mirrors the unit, if it does.
			if fi, err := os.Stat(base); err == nil && fi.IsDir() {
				hs[i] = h.at(base)
			}
			continue
		}
		if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("cgroup parent %s: not a cgroup in the cgroup2 tree", base)
		}
		if !Delegated(base) {
			return nil, fmt.Errorf("cgroup parent %s is not delegated (no trusted.delegate or user.delegate attribute): refusing to make cgroups below it", base)
		}
		hs[i] = h.at(base)
		found = true
	}
	if !found {
		return nil, fmt.Errorf("cgroup parent %q: no cgroup2 tree is mounted here", parent)
	}
	return hs, nil
}

func validParent(p string) bool {
	return filepath.IsAbs(p) && filepath.Clean(p) == p && p != "/"
}

// Delegated reports whether a service manager marked the cgroup dir as
// delegated: systemd (251 and later) sets the extended attribute
// trusted.delegate=1 on the cgroup of a unit with Delegate=yes, and
// user.delegate=1 too (for its unprivileged instances, which cannot
// write trusted.* attributes). Only CAP_SYS_ADMIN sets a trusted.*
// attribute, and only the cgroup's owner (root here) a user.* one: as
// systemd's own cg_is_delegated, trusted.delegate is asked first and
// user.delegate when it is absent.
func Delegated(dir string) bool {
	for _, attr := range []string{"trusted.delegate", "user.delegate"} {
		buf := make([]byte, 16)
		n, err := unix.Getxattr(dir, attr, buf)
		if err != nil {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(string(buf[:n]))) {
		case "1", "yes", "y", "true", "t", "on":
			return true
		}
		return false // present and false: systemd says not delegated
	}
	return false
}

// FindDelegation returns the cgroup a service manager delegated to the
// calling process, relative to the cgroup2 tree's root, or "" and why
// not. It is that of a systemd service with Delegate=yes when all of
// these hold: systemd started the process (INVOCATION_ID or
// NOTIFY_SOCKET in its environment, read with getenv); its cgroup2
// cgroup (the 0:: line of /proc/self/cgroup) is a service's own,
// "*.service" (not one below it, which is somebody else's to manage);
// on hybrid hosts, its name=systemd cgroup is the same one, as systemd
// keeps them; and the cgroup is marked delegated (Delegated). The
// environment alone proves nothing: a service's children inherit it.
func FindDelegation(getenv func(string) string) (parent, why string) {
	if getenv("INVOCATION_ID") == "" && getenv("NOTIFY_SOCKET") == "" {
		return "", "not started by systemd (neither INVOCATION_ID nor NOTIFY_SOCKET is set)"
	}
	hs, err := hierarchies()
	if err != nil {
		return "", fmt.Sprintf("list cgroup hierarchies: %v", err)
	}
	var v2 *hierarchy
	for i, h := range hs {
		if h.v2() && h.mount != "" {
			v2 = &hs[i]
		}
	}
	if v2 == nil {
		return "", "no cgroup2 tree is mounted"
	}
	p := v2.path
	if !validParent(p) || !strings.HasSuffix(filepath.Base(p), ".service") {
		return "", fmt.Sprintf("own cgroup %s is not a service's", p)
	}
	for _, h := range hs {
		if h.followsUnit() && !h.v2() && h.path != p {
			return "", fmt.Sprintf("own name=systemd cgroup %s is not the unified tree's %s", h.path, p)
		}
	}
	if !Delegated(filepath.Join(v2.mount, p)) {
		return "", fmt.Sprintf("own cgroup %s is not marked delegated (no trusted.delegate attribute: Delegate=yes, systemd 251 or later)", p)
	}
	return p, ""
}

// EnterLeaf moves the calling process, every thread of it, from the
// delegated unit's cgroup parent into parent/Leaf (made if need be) in
// each hierarchy that follows the unit. Its children, the stage plugins,
// start there.
func EnterLeaf(parent string) error {
	hs, err := hierarchiesUnder(parent)
	if err != nil {
		return err
	}
	for _, h := range hs {
		if h.base == h.mount {
			continue
		}
		leaf := filepath.Join(h.base, Leaf)
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("supervisor cgroup: %w", err)
		}
		if err := writeFile(filepath.Join(leaf, "cgroup.procs"), "0"); err != nil {
			return fmt.Errorf("supervisor cgroup: %w", err)
		}
	}
	return nil
}

// clearFixedPlace, when hs puts the subhost's cgroups below a delegated
// unit, removes those of a previous boot that sit at the fixed place in
// the same hierarchies (a boot outside the service). Ones that still
// hold processes are another guest of that name: a conflict.
func clearFixedPlace(hs []hierarchy, name string) error {
	var stale []hierarchy
	for _, h := range hs {
		if h.base == h.mount {
			continue
		}
		f := h.at(h.mount)
		if populated(f.nameDir(name)) {
			return sdk.Conflictf("subhost %q has processes in %s (started outside this service?): stop it first", name, f.nameDir(name))
		}
		stale = append(stale, f)
	}
	return remove(stale, name)
}

// recordedPlaces gives the hierarchies of hs where the boot record's
// cgroups put subhost name: Dir/NAME below some base. A recorded path
// that is not Dir/NAME inside that hierarchy's mount is ignored: a
// damaged record must not make subhost remove another cgroup.
func recordedPlaces(hs []hierarchy, name string, recorded []sdk.Cgroup) []hierarchy {
	var out []hierarchy
	for _, c := range recorded {
		i := slices.IndexFunc(hs, func(h hierarchy) bool { return h.mount != "" && h.name() == c.Hierarchy })
		if i < 0 || filepath.Clean(c.Dir) != c.Dir || filepath.Base(c.Dir) != name {
			continue
		}
		base := filepath.Dir(filepath.Dir(c.Dir))
		if filepath.Base(filepath.Dir(c.Dir)) != Dir || (base != hs[i].mount && !strings.HasPrefix(base, hs[i].mount+"/")) {
			continue
		}
		out = append(out, hs[i].at(base))
	}
	return out
}

// uniquePlaces drops hierarchies not mounted here and repeated places.
func uniquePlaces(hs []hierarchy, name string) []hierarchy {
	var out []hierarchy
	seen := map[string]bool{}
	for _, h := range hs {
		if h.mount == "" || seen[h.nameDir(name)] {
			continue
		}
		seen[h.nameDir(name)] = true
		out = append(out, h)
	}
	return out
}
