package devcgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/mountinfo"
	"github.com/subhost/subhost/sdk"
)

// ErrBusy is returned when a subhost's cgroup still holds processes: a
// guest of that name still runs.
var ErrBusy = errors.New("cgroup still holds processes")

// Placement is where a guest goes.
type Placement struct {
	// Dirs are the guest's cgroups, one per hierarchy, for Join.
	Dirs []string
	// Devices reports whether the device policy applies. It does not
	// where no cgroup v1 devices hierarchy is mounted (a cgroup v2 host).
	Devices bool
	// Unplaced names the hierarchies in which the caller's cgroup is the
	// root but which are not mounted here, so that the guest's cgroup
	// namespace will show that root.
	Unplaced []string
}

// hierarchy is one cgroup hierarchy the caller is a member of.
type hierarchy struct {
	membership
	// mount is where the hierarchy's root is mounted, "" when nowhere in
	// the caller's mount namespace.
	mount string
}

func (h hierarchy) devices() bool { return !h.v2() && slices.Contains(h.controllers, "devices") }
func (h hierarchy) cpuset() bool  { return !h.v2() && slices.Contains(h.controllers, "cpuset") }

// atRoot reports whether the caller's cgroup is the root of the
// hierarchy (as its cgroup namespace shows it): a cgroup namespace made
// there would show the guest the whole hierarchy.
func (h hierarchy) atRoot() bool { return h.path == "/" }

// The kernel's tables hierarchies reads; tests make up other hosts.
var (
	procCgroup    = "/proc/self/cgroup"
	procMountinfo = "/proc/self/mountinfo"
)

// hierarchies lists the hierarchies the caller is a member of, each with
// a mount of its root.
func hierarchies() ([]hierarchy, error) {
	data, err := os.ReadFile(procCgroup)
	if err != nil {
		return nil, err
	}
	ms, err := parseCgroupFile(string(data))
	if err != nil {
		return nil, err
	}
	mounts, err := mountinfo.Read(procMountinfo)
	if err != nil {
		return nil, err
	}
	var out []hierarchy
	for _, m := range ms {
		h := hierarchy{membership: m}
		for _, e := range mounts {
			if e.Root == "/" && m.matches(e.FSType, e.Super) {
				h.mount = e.Mountpoint
				break
			}
		}
		out = append(out, h)
	}
	return out, nil
}

func (h hierarchy) nameDir(name string) string  { return filepath.Join(h.mount, Dir, name) }
func (h hierarchy) guestDir(name string) string { return filepath.Join(h.mount, Dir, name, Guest) }

// Setup makes a subhost's cgroups afresh, removing whatever a previous
// launch left (ErrBusy if processes are still in them), and returns
// where its guest goes:
//
//   - In the devices hierarchy, Dir/NAME denies every device but Rules'
//     allow-list, and the guest goes in Dir/NAME/Guest, with the same
//     list. A cgroup v1 device cgroup never allows more than its parent,
//     so a guest whose cgroup namespace is rooted at Dir/NAME/Guest
//     cannot widen its list, even with CAP_SYS_ADMIN.
//   - In each other hierarchy in which the caller's cgroup is the root,
//     the guest goes in Dir/NAME/Guest too, with no limit set: only so
//     that its cgroup namespace shows it no hierarchy's root (whose
//     release_agent runs a program as root on the host, and whose
//     cgroups are the host's). In a hierarchy in which the caller is in
//     a cgroup of its own (a service manager's), the guest stays in it,
//     and is accounted as before.
//
// Without a devices hierarchy, Setup places the guest in the others and
// reports Devices false. On error, it removes what it made.
func Setup(name string, disks []sdk.Device) (p Placement, err error) {
	if err := ValidName(name); err != nil {
		return p, err
	}
	hs, err := hierarchies()
	if err != nil {
		return p, fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	if err := remove(hs, name); err != nil {
		return p, err
	}
	defer func() {
		if err != nil {
			remove(hs, name)
			p = Placement{}
		}
	}()
	rules := Rules(disks)
	for _, h := range hs {
		switch {
		case h.mount == "" && (h.devices() || h.atRoot()):
			p.Unplaced = append(p.Unplaced, h.name())
			continue
		case h.devices():
			p.Devices = true
		case !h.atRoot():
			continue
		}
		if err := makeDirs(h, name, rules); err != nil {
			return p, fmt.Errorf("cgroup %s: %w", h.name(), err)
		}
		p.Dirs = append(p.Dirs, h.guestDir(name))
	}
	return p, nil
}

// makeDirs makes Dir, Dir/NAME and Dir/NAME/Guest in h (Dir may exist)
// and, in the devices hierarchy, gives both of the latter rules. Those of
// Dir/NAME are written before the guest's cgroup is made: the kernel
// refuses to change a device cgroup's default once it has a child.
func makeDirs(h hierarchy, name string, rules []string) error {
	top := filepath.Join(h.mount, Dir)
	// Another subhost's Remove may take Dir away once it is empty,
	// between the two mkdirs: try again.
	for try := 0; ; try++ {
		err := os.Mkdir(top, 0o755)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := inheritCpuset(h, top); err != nil {
			return err
		}
		err = os.Mkdir(h.nameDir(name), 0o755)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || try == 2 {
			return err
		}
	}
	if err := inheritCpuset(h, h.nameDir(name)); err != nil {
		return err
	}
	if h.devices() {
		if err := applyRules(h.nameDir(name), rules); err != nil {
			return err
		}
	}
	if err := os.Mkdir(h.guestDir(name), 0o755); err != nil {
		return err
	}
	if err := inheritCpuset(h, h.guestDir(name)); err != nil {
		return err
	}
	if h.devices() {
		// Inherited from Dir/NAME already; written again so that the
		// guest's own list does not rest on that.
		return applyRules(h.guestDir(name), rules)
	}
	return nil
}

// inheritCpuset gives a new cgroup v1 cpuset its parent's CPUs and memory
// nodes: it starts with none, and no process can join it so.
func inheritCpuset(h hierarchy, dir string) error {
	if !h.cpuset() {
		return nil
	}
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		cur, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(cur)) != "" {
			continue
		}
		parent, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, f), strings.TrimSpace(string(parent))); err != nil {
			return err
		}
	}
	return nil
}

// applyRules denies every device in the device cgroup dir, then allows
// rules, and checks that devices.list is exactly rules.
func applyRules(dir string, rules []string) error {
	if err := writeFile(filepath.Join(dir, "devices.deny"), "a"); err != nil {
		return err
	}
	for _, r := range rules {
		if err := writeFile(filepath.Join(dir, "devices.allow"), r); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "devices.list"))
	if err != nil {
		return err
	}
	got := strings.Fields(strings.ReplaceAll(string(data), " ", "_"))
	want := make([]string, len(rules))
	for i, r := range rules {
		want[i] = strings.ReplaceAll(r, " ", "_")
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s/devices.list is %q, want %q", dir, data, strings.Join(rules, "\n"))
	}
	return nil
}

// writeFile writes s to a cgroup file in one write(2): the kernel takes
// one rule, or one PID, per write.
func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", s, path, err)
	}
	return nil
}

// Join moves the calling process, every thread of it, into each of dirs
// (Placement.Dirs). Its children inherit them.
func Join(dirs []string) error {
	for _, d := range dirs {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), "0"); err != nil {
			return fmt.Errorf("join cgroup: %w", err)
		}
	}
	return nil
}

// JoinGuest moves the calling process into the cgroups of subhost name's
// guest, those that exist (none where Setup has not run, or on a host
// without cgroup v1): what a command run inside a guest from outside it
// needs to be confined as the guest is. It returns the cgroups joined.
func JoinGuest(name string) ([]string, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	hs, err := hierarchies()
	if err != nil {
		return nil, fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	var dirs []string
	for _, h := range hs {
		if h.mount == "" {
			continue
		}
		if fi, err := os.Stat(h.guestDir(name)); err == nil && fi.IsDir() {
			dirs = append(dirs, h.guestDir(name))
		}
	}
	return dirs, Join(dirs)
}

// Paths lists the cgroup directories of subhost name that exist.
func Paths(name string) ([]string, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	hs, err := hierarchies()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, h := range hs {
		if _, err := os.Stat(h.nameDir(name)); h.mount != "" && err == nil {
			out = append(out, h.nameDir(name))
		}
	}
	return out, nil
}

// Remove removes subhost name's cgroups in every hierarchy, and the
// guest's own cgroups below them, and Dir once it is empty. A cgroup
// that still holds processes a few seconds on (the last of a killed
// guest leave it just after it is reaped) is left, with ErrBusy. Not
// found is success.
func Remove(name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	hs, err := hierarchies()
	if err != nil {
		return fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	return remove(hs, name)
}

func remove(hs []hierarchy, name string) error {
	var errs []error
	deadline := time.Now().Add(3 * time.Second)
	for _, h := range hs {
		if h.mount == "" {
			continue
		}
		if err := removeTree(h.nameDir(name), deadline); err != nil {
			errs = append(errs, fmt.Errorf("cgroup %s: %w", h.name(), err))
			continue
		}
		// Fails while another subhost's cgroup is there.
		unix.Rmdir(filepath.Join(h.mount, Dir))
	}
	return errors.Join(errs...)
}

// removeTree removes the cgroup dir and every cgroup below it, deepest
// first (a cgroup with children cannot be removed). A guest may have
// made any tree of its own below its cgroup. While one still holds
// processes, it tries again until deadline.
func removeTree(dir string, deadline time.Time) error {
	for {
		err := rmdirAll(dir)
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove %s: %w (a guest of that name still runs)", dir, ErrBusy)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rmdirAll(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := rmdirAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// Thaw thaws every cgroup of subhost name's guest in the v1 freezer
// hierarchy. A guest's root may freeze its own cgroup (or one it made
// below it), and a frozen process does not die of SIGKILL until it is
// thawed: Down thaws before it signals. Nothing there is success.
func Thaw(name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	hs, err := hierarchies()
	if err != nil {
		return fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	var errs []error
	for _, h := range hs {
		if h.mount == "" || h.v2() || !slices.Contains(h.controllers, "freezer") {
			continue
		}
		// A self-frozen child stays frozen when its parent thaws: thaw
		// each one.
		filepath.WalkDir(h.nameDir(name), func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			werr := os.WriteFile(filepath.Join(path, "freezer.state"), []byte("THAWED"), 0)
			if werr != nil && !errors.Is(werr, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("thaw %s: %w", path, werr))
			}
			return nil
		})
	}
	return errors.Join(errs...)
}
