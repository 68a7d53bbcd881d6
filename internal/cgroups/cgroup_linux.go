package cgroups

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/mountinfo"
	"github.com/subhost/subhost/sdk"
)

// ErrBusy is returned when a subhost's cgroup still holds processes
// after Remove killed them.
var ErrBusy = errors.New("cgroup still holds processes")

// Device policies, as the boot record names them.
const (
	PolicyV1Devices = "cgroup1-devices"
	PolicyV2BPF     = "cgroup2-bpf"
)

// Placement is where a guest goes and what binds it.
type Placement struct {
	Cgroups      []sdk.Cgroup
	DevicePolicy []string
	// Unplaced names the hierarchies of the caller that are mounted
	// nowhere here: the guest's cgroup namespace shows their root.
	Unplaced []string
}

// hierarchy is one cgroup hierarchy the caller is a member of.
type hierarchy struct {
	membership
	// mount is where the hierarchy's root is mounted, "" when nowhere in
	// the caller's mount namespace.
	mount string
	// base is where Dir goes: mount, or, in the hierarchies a service
	// manager delegated a unit's cgroup in, that cgroup (hierarchiesUnder).
	base string
}

// at is h with Dir at base.
func (h hierarchy) at(base string) hierarchy { h.base = base; return h }

func (h hierarchy) has(ctrl string) bool { return !h.v2() && slices.Contains(h.controllers, ctrl) }
func (h hierarchy) devices() bool        { return h.has("devices") }
func (h hierarchy) cpuset() bool         { return h.has("cpuset") }

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
		out = append(out, h.at(h.mount))
	}
	return out, nil
}

// The subhost's cgroups sit at a fixed place under each hierarchy's
// root, never below the caller's own cgroup (which may be a service
// manager's, or nested, as memory:/process_api/... on the build host),
// unless a service manager delegated a unit's cgroup to the supervisor:
// then, where that delegation holds, below the unit's (hierarchiesUnder).
func (h hierarchy) nameDir(name string) string  { return filepath.Join(h.base, Dir, name) }
func (h hierarchy) guestDir(name string) string { return filepath.Join(h.base, Dir, name, Guest) }

// plan is where each limit goes on this host.
type plan struct {
	settings map[string][]setting // by hierarchy name
	enable   []string             // cgroup v2 controllers to enable for the subhost's cgroup
}

// planFor decides which hierarchy applies each of l's limits: the cgroup
// v1 hierarchy with the controller, else the cgroup2 tree when its root
// offers it. A limit given explicitly that no hierarchy can apply is an
// error naming the variable; the PIDS_MAX default is then skipped.
func planFor(hs []hierarchy, l Limits) (plan, error) {
	p := plan{settings: map[string][]setting{}}
	var v2 *hierarchy
	var v2ctrls []string
	for i, h := range hs {
		if h.v2() && h.mount != "" {
			v2 = &hs[i]
			if b, err := os.ReadFile(filepath.Join(h.base, "cgroup.controllers")); err == nil {
				v2ctrls = strings.Fields(string(b))
			}
		}
	}
	v1 := func(ctrl string) *hierarchy {
		for i, h := range hs {
			if h.mount != "" && h.has(ctrl) {
				return &hs[i]
			}
		}
		return nil
	}
	ioFile := ""
	if h := v1("blkio"); h != nil && l.IOWeight != 0 {
		// Looked for only when asked: it lists the blkio root.
		ioFile = blkioWeightFile(*h)
	}
	v2s := l.v2Settings()
	for _, s := range l.v1Settings(ioFile) {
		if h := v1(s.Controller); h != nil {
			if s.File == "" {
				return p, varErrorf(s.Var, "%s: this host's blkio controller has no weight file (neither blkio.weight nor blkio.bfq.weight: no I/O scheduler with weights); unset it here", s.Var)
			}
			// The root cgroup has every v1 file but pids.max: one missing
			// is a feature the kernel lacks (swap accounting, CFS
			// bandwidth).
			if _, err := os.Stat(filepath.Join(h.mount, s.File)); err != nil && s.Controller != "pids" {
				return p, varErrorf(s.Var, "%s: this host's %s controller has no %s", s.Var, s.Controller, s.File)
			}
			if s.Var == "MEMORY_SWAP_MAX" && l.MemoryMax == 0 {
				return p, varErrorf("MEMORY_SWAP_MAX", "MEMORY_SWAP_MAX: cgroup v1 limits memory and swap together: set MEMORY_MAX too")
			}
			p.settings[h.name()] = appendOnce(p.settings[h.name()], s)
			continue
		}
		// No v1 hierarchy: the v2 equivalents of this variable.
		for _, s2 := range v2s {
			if s2.Var != s.Var {
				continue
			}
			if v2 == nil || !slices.Contains(v2ctrls, s2.Controller) {
				if !l.Given(s.Var) {
					break // a default the host cannot apply
				}
				if v2 != nil && v2.base != v2.mount {
					return p, varErrorf(s.Var, "%s: no %s controller here (no cgroup v1 hierarchy has it, and it is not among those delegated to %s)", s.Var, s2.Controller, v2.base)
				}
				return p, varErrorf(s.Var, "%s: no %s controller on this host (neither a cgroup v1 hierarchy nor the cgroup2 tree offers it)", s.Var, s2.Controller)
			}
			p.settings[v2.name()] = appendOnce(p.settings[v2.name()], s2)
			if !slices.Contains(p.enable, s2.Controller) {
				p.enable = append(p.enable, s2.Controller)
			}
		}
	}
	if l.CPUSet != "" {
		if err := checkCPUSet(hs, l.CPUSet); err != nil {
			return p, err
		}
	}
	return p, nil
}

// blkioWeightFile is the I/O weight file of the cgroup v1 blkio
// hierarchy h, "" when it has none: CFQ's, which the root cgroup has
// too, or BFQ's, which only the cgroups below the root have (the kernel
// makes it CFTYPE_NOT_ON_ROOT): looked for in the subhost parent, else
// in the root's first child.
func blkioWeightFile(h hierarchy) string {
	if _, err := os.Stat(filepath.Join(h.mount, cfqWeightFile)); err == nil {
		return cfqWeightFile
	}
	below := []string{filepath.Join(h.base, Dir)}
	if ents, err := os.ReadDir(h.mount); err == nil {
		if i := slices.IndexFunc(ents, fs.DirEntry.IsDir); i >= 0 {
			below = append(below, filepath.Join(h.mount, ents[i].Name()))
		}
	}
	for _, dir := range below {
		if _, err := os.Stat(filepath.Join(dir, bfqWeightFile)); err == nil {
			return bfqWeightFile
		}
	}
	return ""
}

// VarError is a limit the host cannot apply; Var names the variable.
type VarError struct {
	Var string
	msg string
}

func (e *VarError) Error() string { return e.msg }

func varErrorf(v, format string, args ...any) error {
	return &VarError{Var: v, msg: fmt.Sprintf(format, args...)}
}

func appendOnce(list []setting, s setting) []setting {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// checkCPUSet refuses CPUs the host's root cpuset lacks.
func checkCPUSet(hs []hierarchy, want string) error {
	have := ""
	for _, h := range hs {
		switch {
		case h.mount == "":
		case h.cpuset():
			b, _ := os.ReadFile(filepath.Join(h.mount, "cpuset.cpus"))
			have = string(b)
		case h.v2() && have == "":
			b, _ := os.ReadFile(filepath.Join(h.base, "cpuset.cpus.effective"))
			have = string(b)
		}
	}
	if strings.TrimSpace(have) == "" {
		b, err := os.ReadFile("/sys/devices/system/cpu/online")
		if err != nil {
			return nil
		}
		have = string(b)
	}
	host, err := ParseCPUList(have)
	if err != nil {
		return nil
	}
	cpus, _ := ParseCPUList(want)
	for _, c := range cpus {
		if !slices.Contains(host, c) {
			return varErrorf("CPUSET_CPUS", "CPUSET_CPUS=%q: this host has no CPU %d (it has %s)", want, c, strings.TrimSpace(have))
		}
	}
	return nil
}

// CheckHost checks, without changing anything, that this host can apply
// l, with the subhost's cgroups below parent (a delegated unit's cgroup,
// or "" for the fixed place; see Setup): each error about a limit is a
// *VarError naming the variable.
func CheckHost(parent string, l Limits) error {
	hs, err := hierarchiesUnder(parent)
	if err != nil {
		return err
	}
	_, err = planFor(hs, l)
	return err
}

// Setup makes subhost name's cgroups, Dir/NAME with l's limits and the
// device policy, and Dir/NAME/Guest for the guest, in every mounted
// hierarchy: at its root, or, when parent names the cgroup a service
// manager delegated to the supervisor (FindDelegation), below parent in
// the hierarchies that delegation covers (hierarchiesUnder). Cgroups
// that exist but hold no process (a previous boot's) are made afresh;
// ones that hold processes (a running guest) are adopted: the limits are
// written again and the device policy checked. A host where no device
// policy can be applied is an error unless l opts out. On error, what
// Setup made is removed.
func Setup(name, parent string, l Limits, disks []sdk.Device) (p Placement, err error) {
	if err := sdk.ValidName(name); err != nil {
		return p, err
	}
	hs, err := hierarchiesUnder(parent)
	if err != nil {
		return p, err
	}
	rules := Rules(disks)
	if l.NoDevicePolicy {
		rules = nil
	}
	// The cgroup2 device program loads while the cgroups are made.
	var load *programLoad
	if rules != nil && slices.ContainsFunc(hs, func(h hierarchy) bool { return h.v2() && h.mount != "" }) {
		load = loadDeviceProgram(rules)
		defer load.close()
	}
	pl, err := planFor(hs, l)
	if err != nil {
		return p, sdk.Invalidf("%w", err)
	}
	if err := clearFixedPlace(hs, name); err != nil {
		return p, err
	}
	// What a previous boot left (a cgroup with no process in it) is
	// removed; one with processes (a running guest) is adopted. A boot
	// that finds nothing, as nearly every one does, goes straight on:
	// one lstat per hierarchy rather than a walk of each.
	left := slices.ContainsFunc(hs, func(h hierarchy) bool { return h.mount != "" && exists(h.nameDir(name)) })
	adopt := false
	for _, h := range hs {
		if left && h.mount != "" && populated(h.nameDir(name)) {
			adopt = true
		}
	}
	if !adopt {
		if left {
			if err := remove(hs, name); err != nil {
				return p, err
			}
		}
		defer func() {
			if err != nil {
				remove(hs, name)
				p = Placement{}
			}
		}()
	}
	// One hierarchy after the other: every mkdir in a cgroup file system
	// takes the kernel's one cgroup_mutex, so the hierarchies' cgroups
	// are made one at a time whatever the caller does, and setting them
	// up from goroutines of their own only added scheduling (measured:
	// no faster alone, and a boot runs this on CPUs the other stages'
	// plugins are busy on). The cgroup2 program loads meanwhile.
	made := make([]madeIn, len(hs))
	for i, h := range hs {
		if h.mount != "" {
			made[i] = setupIn(h, name, rules, load, pl)
		}
	}
	for i, h := range hs {
		if h.mount == "" {
			p.Unplaced = append(p.Unplaced, h.name())
			continue
		}
		if made[i].err != nil {
			return p, made[i].err
		}
		p.Cgroups = append(p.Cgroups, sdk.Cgroup{Hierarchy: h.name(), Dir: h.nameDir(name), Guest: h.guestDir(name)})
		if made[i].policy != "" {
			p.DevicePolicy = append(p.DevicePolicy, made[i].policy)
		}
	}
	if rules != nil && len(p.DevicePolicy) == 0 {
		return p, errors.New("no device policy can be applied on this host (no cgroup v1 devices hierarchy and no cgroup2 mount): set DEVICE_POLICY=none to boot without one, which lets the guest open any host device")
	}
	return p, nil
}

// madeIn is what setupIn did in one hierarchy: the device policy it
// applied there, if any, or why it failed.
type madeIn struct {
	policy string
	err    error
}

// setupIn makes subhost name's cgroups in h, with the limits of pl and,
// where h can carry it, the device policy of rules (none if nil): in
// cgroup2, the program of load.
func setupIn(h hierarchy, name string, rules []string, load *programLoad, pl plan) madeIn {
	if err := makeDirs(h, name, rules, pl); err != nil {
		return madeIn{err: fmt.Errorf("cgroup %s: %w", h.name(), err)}
	}
	switch {
	case rules == nil:
	case h.devices():
		return madeIn{policy: PolicyV1Devices}
	case h.v2():
		if err := ensureDeviceProgram(h.nameDir(name), load); err != nil {
			return madeIn{err: fmt.Errorf("cgroup2 device program on %s: %w", h.nameDir(name), err)}
		}
		return madeIn{policy: PolicyV2BPF}
	}
	return madeIn{}
}

// eachHierarchy calls f for every mounted hierarchy of hs, all at once,
// and returns when every call has.
func eachHierarchy(hs []hierarchy, f func(int, hierarchy)) {
	var wg sync.WaitGroup
	for i, h := range hs {
		if h.mount == "" {
			continue
		}
		wg.Go(func() { f(i, h) })
	}
	wg.Wait()
}

// makeDirs makes Dir, Dir/NAME and Dir/NAME/Guest in h (any may exist),
// writes the limits pl gives h on Dir/NAME and, in the devices
// hierarchy, gives Dir/NAME and the guest's cgroup the rules. Those of
// Dir/NAME are written before the guest's cgroup is made: the kernel
// refuses to change a device cgroup's default once it has a child.
func makeDirs(h hierarchy, name string, rules []string, pl plan) error {
	top := filepath.Join(h.base, Dir)
	// Another subhost's Remove may take Dir away once it is empty,
	// between the two mkdirs: try again.
	fresh := false
	for try := 0; ; try++ {
		err := os.Mkdir(top, 0o755)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err == nil {
			if err := inheritCpuset(h, top, true); err != nil {
				return err
			}
		}
		err = os.Mkdir(h.nameDir(name), 0o755)
		if err == nil {
			fresh = true
			break
		}
		if errors.Is(err, fs.ErrExist) {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || try == 2 {
			return err
		}
	}
	if err := inheritCpuset(h, h.nameDir(name), fresh); err != nil {
		return err
	}
	if h.v2() {
		if err := enableControllers(h.base, pl.enable); err != nil {
			return err
		}
	}
	if err := writeSettings(h.nameDir(name), pl.settings[h.name()], writeFile); err != nil {
		return err
	}
	if h.devices() && rules != nil {
		if fresh {
			if err := applyRules(h.nameDir(name), rules); err != nil {
				return err
			}
		} else if err := checkRules(h.nameDir(name), rules); err != nil {
			return err
		}
	}
	err := os.Mkdir(h.guestDir(name), 0o755)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := inheritCpuset(h, h.guestDir(name), true); err != nil {
		return err
	}
	if h.devices() && rules != nil {
		// A new device cgroup starts with its parent's list (the kernel
		// copies it as it makes the cgroup): checked, not written again
		// rule by rule.
		return checkRules(h.guestDir(name), rules)
	}
	return nil
}

// enableControllers enables, in cgroup v2, the controllers the limits
// need for Dir and Dir/NAME below base (and no other: the fs2 manager of
// opencontainers/cgroups enables every one offered, which on a hybrid
// host's controller-less tree means none, and on a v2 host more than
// the subhost asked for). A delegated unit's cgroup.subtree_control is
// the delegatee's to write; the supervisor has left the unit's cgroup
// for its leaf first (EnterLeaf), as cgroup v2 enables controllers only
// below a cgroup that holds no process.
func enableControllers(base string, ctrls []string) error {
	for _, dir := range []string{base, filepath.Join(base, Dir)} {
		for _, c := range ctrls {
			if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+c); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeSettings writes each setting. A write the kernel refuses for its
// order (v1's memory+swap below memory, a cpuset narrower than its
// child's) is tried again after the others.
func writeSettings(dir string, ss []setting, write func(path, s string) error) error {
	pending := slices.Clone(ss)
	for len(pending) > 0 {
		var failed []setting
		var firstErr error
		for _, s := range pending {
			if err := write(filepath.Join(dir, s.File), s.Value); err != nil {
				failed = append(failed, s)
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", s.Var, err)
				}
			}
		}
		if len(failed) == len(pending) {
			return firstErr
		}
		pending = failed
	}
	return nil
}

// inheritCpuset gives a cgroup v1 cpuset its parent's CPUs and memory
// nodes: it starts with none, and no process can join it so. A cgroup
// just made (fresh) is known to have none: it is not read first (each
// cgroupfs access walks a long path, and a boot makes several). A parent
// found without any (Dir made by a run that ended between its mkdir and
// this) gets its own parent's first.
func inheritCpuset(h hierarchy, dir string, fresh bool) error {
	if !h.cpuset() {
		return nil
	}
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		if !fresh {
			cur, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return err
			}
			if strings.TrimSpace(string(cur)) != "" {
				continue
			}
		}
		parentDir := filepath.Dir(dir)
		parent, err := os.ReadFile(filepath.Join(parentDir, f))
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(parent)) == "" && len(parentDir) > len(h.base) {
			if err := inheritCpuset(h, parentDir, false); err != nil {
				return err
			}
			if parent, err = os.ReadFile(filepath.Join(parentDir, f)); err != nil {
				return err
			}
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
	if err := writeEach(filepath.Join(dir, "devices.allow"), rules); err != nil {
		return err
	}
	return checkRules(dir, rules)
}

// checkRules compares dir's devices.list with rules.
func checkRules(dir string, rules []string) error {
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
func writeFile(path, s string) error { return writeEach(path, []string{s}) }

// writeEach writes each of lines to a cgroup file in a write(2) of its
// own, through one open (a boot writes a score of device rules).
//
// It calls the kernel directly rather than through os.File: cgroupfs
// files can be polled, so an os.File would register each one with the
// runtime's poller and take it out again, three more system calls for
// each of the hundreds of writes a boot makes.
func writeEach(path string, lines []string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	for _, s := range lines {
		var n int
		n, err = unix.Write(fd, []byte(s))
		if err == nil && n != len(s) {
			err = io.ErrShortWrite
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("write %q to %s: %w", s, path, err)
		}
	}
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("write to %s: %w", path, err)
	}
	return nil
}

// Join moves the calling process, every thread of it, into each of dirs
// (the boot record's guest cgroups). Its children inherit them.
func Join(dirs []string) error {
	for _, d := range dirs {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), "0"); err != nil {
			return fmt.Errorf("join cgroup: %w", err)
		}
	}
	return nil
}

// GuestDirs lists the guest cgroups of a boot record.
func GuestDirs(cgs []sdk.Cgroup) []string {
	var out []string
	for _, c := range cgs {
		out = append(out, c.Guest)
	}
	return out
}

// Paths lists the cgroup directories of subhost name that exist.
func Paths(name string) ([]string, error) {
	if err := sdk.ValidName(name); err != nil {
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

// Remove takes subhost name's cgroups away in every hierarchy: it thaws
// them, kills every process left in them (a guest's stragglers, or
// commands entered into it), and removes them with any cgroups the
// guest made below its own, then Dir once it is empty. It looks at the
// fixed place, below parent (as Setup), and where the boot record's
// cgroups say they are (recorded: a `subhost stop` from a shell knows no
// parent, only the record). Not found is success.
func Remove(name, parent string, recorded []sdk.Cgroup) error {
	if err := sdk.ValidName(name); err != nil {
		return err
	}
	fixed, err := hierarchies()
	if err != nil {
		return fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	places := append(fixed, recordedPlaces(fixed, name, recorded)...)
	// A parent that is gone (the service manager removed the unit's
	// cgroup, and the guest's with it) leaves the record to go by.
	if under, err := hierarchiesUnder(parent); parent != "" && err == nil {
		places = append(places, under...)
	}
	places = uniquePlaces(places, name)
	// Each hierarchy on its own, all at once: a frozen process that is
	// killed before its freezer cgroup is thawed dies when it is, and
	// removeTree waits for the cgroups to empty.
	errs := make([]error, len(places))
	eachHierarchy(places, func(i int, h hierarchy) {
		dirs := []string{h.nameDir(name)}
		errs[i] = Thaw(dirs)
		killAll(dirs)
	})
	return errors.Join(errors.Join(errs...), remove(places, name))
}

func remove(hs []hierarchy, name string) error {
	errs := make([]error, len(hs))
	deadline := time.Now().Add(3 * time.Second)
	eachHierarchy(hs, func(i int, h hierarchy) {
		if err := removeTree(h.nameDir(name), deadline); err != nil {
			errs[i] = fmt.Errorf("cgroup %s: %w", h.name(), err)
			return
		}
		// The parent at the fixed place stays, made once: an operator
		// may give it limits for all subhosts together, and making it
		// again would cost a boot on a host with one guest a mkdir per
		// hierarchy under the kernel's global cgroup_mutex. Below a
		// unit's cgroup it goes, so that the service manager can remove
		// the unit's. (Fails while another subhost's cgroup is there.)
		if h.base != h.mount {
			unix.Rmdir(filepath.Join(h.base, Dir))
		}
	})
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
			return fmt.Errorf("remove %s: %w", dir, ErrBusy)
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

// walk calls f for dir and every cgroup below it that exists.
func walk(dir string, f func(string)) {
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			f(path)
		}
		return nil
	})
}

// populated reports whether any process is in dir or below it.
func populated(dir string) bool {
	found := false
	walk(dir, func(d string) {
		if b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			found = true
		}
	})
	return found
}

// killAll SIGKILLs every process in dirs and below, until none is left
// or a few seconds have passed. Each PID read is in the subhost's own
// cgroup: a PID that moved on was reaped and reused only if it left the
// cgroup, and then it is not read here.
func killAll(dirs []string) {
	deadline := time.Now().Add(3 * time.Second)
	for {
		any := false
		for _, dir := range dirs {
			walk(dir, func(d string) {
				// cgroup v2 kills a whole subtree in one write (5.14).
				if writeFile(filepath.Join(d, "cgroup.kill"), "1") == nil {
					return
				}
				b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
				if err != nil {
					return
				}
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
						any = true
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			})
		}
		if !any || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Thaw thaws every cgroup in dirs and below them: in the v1 freezer
// (freezer.state) and in cgroup v2 (cgroup.freeze). A guest's root may
// freeze its own cgroup (or one it made below it), and a frozen process
// does not die of SIGKILL until it is thawed: stopping a guest thaws
// first. A self-frozen child stays frozen when its parent thaws, so each
// one is thawed. Nothing there is success.
func Thaw(dirs []string) error {
	var errs []error
	for _, dir := range dirs {
		walk(dir, func(path string) {
			for file, value := range map[string]string{"freezer.state": "THAWED", "cgroup.freeze": "0"} {
				err := writeFile(filepath.Join(path, file), value)
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, fmt.Errorf("thaw %s: %w", path, err))
				}
			}
		})
	}
	return errors.Join(errs...)
}

// Apply writes the limits l gives explicitly (Set, not the defaults) to
// subhost name's existing cgroups, where its boot record's cgroups
// (recorded) say they are: a running subhost's limits changed in place.
// Errors name the variable.
//
// It changes all of them or none: a write the kernel refuses part way
// (a v1 cpuset narrower than one the guest made below its own, a memory
// limit under what cannot be reclaimed) has what was written before it
// put back, so that `subhost set` never leaves some of its keys applied
// and reports none.
func Apply(name string, recorded []sdk.Cgroup, l Limits) (err error) {
	if err := sdk.ValidName(name); err != nil {
		return err
	}
	var undo undoLog
	defer func() {
		if err == nil {
			return
		}
		if uerr := undo.restore(); uerr != nil {
			err = fmt.Errorf("%w; and putting back what was written before it failed too, so some limits changed: %v", err, uerr)
		} else if len(undo.saved) > 0 {
			err = fmt.Errorf("%w (what was written before it is put back: nothing changed)", err)
		}
	}()
	hs, err := hierarchies()
	if err != nil {
		return fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	for _, r := range recordedPlaces(hs, name, recorded) {
		for i := range hs {
			if hs[i].name() == r.name() {
				hs[i] = r
			}
		}
	}
	pl, err := planFor(hs, l)
	if err != nil {
		return sdk.Invalidf("%w", err)
	}
	for _, h := range hs {
		ss := pl.settings[h.name()]
		if len(ss) == 0 {
			continue
		}
		if _, err := os.Stat(h.nameDir(name)); err != nil {
			return sdk.NotFoundf("subhost %q has no cgroup in %s: is it running?", name, h.name())
		}
		if h.v2() {
			// The boot switched on only the controllers its limits
			// needed (the limit files of the others do not exist).
			if err := enableControllers(h.base, pl.enable); err != nil {
				return fmt.Errorf("%s: %w", strings.Join(pl.enable, ", "), err)
			}
		}
		var rest []setting
		for _, s := range ss {
			if s.Controller != "cpuset" || h.v2() {
				rest = append(rest, s)
				continue
			}
			// A v1 cpuset is never wider than its parent: widen the
			// subhost's first, narrow the guest's first.
			up := undo.write(filepath.Join(h.nameDir(name), s.File), s.Value)
			down := undo.write(filepath.Join(h.guestDir(name), s.File), s.Value)
			if up != nil {
				up = undo.write(filepath.Join(h.nameDir(name), s.File), s.Value)
			}
			if err := errors.Join(up, down); err != nil {
				return fmt.Errorf("%s: %w", s.Var, err)
			}
		}
		if err := writeSettings(h.nameDir(name), rest, undo.write); err != nil {
			return err
		}
	}
	return nil
}

// undoLog keeps what each file held before it was first written, to put
// back, and the order in which the writes succeeded.
type undoLog struct {
	old   map[string]string
	saved []savedFile // in the order the files were written
	// writeFile, unless nil, is used instead of the package's (tests).
	writeFile func(path, s string) error
}

func (u *undoLog) writeOne(path, s string) error {
	if u.writeFile != nil {
		return u.writeFile(path, s)
	}
	return writeFile(path, s)
}

type savedFile struct{ path, value string }

// write writes s to path, first keeping what path holds.
func (u *undoLog) write(path, s string) error {
	old, known := u.old[path]
	if !known {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		old = strings.TrimSpace(string(b))
		if u.old == nil {
			u.old = map[string]string{}
		}
		u.old[path] = old
	}
	if err := u.writeOne(path, s); err != nil {
		return err
	}
	if !slices.ContainsFunc(u.saved, func(f savedFile) bool { return f.path == path }) {
		u.saved = append(u.saved, savedFile{path, old})
	}
	return nil
}

// restore writes the kept values back, the last written first: the
// kernel took the writes in that order (a v1 cpuset wider in the parent
// before the child, memory.memsw before memory.limit when raising), so it
// takes their undoing in the reverse one. It goes on past a failure.
func (u *undoLog) restore() error {
	var errs []error
	for i := len(u.saved) - 1; i >= 0; i-- {
		f := u.saved[i]
		if err := u.writeOne(f.path, f.value); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Delegate gives each guest cgroup of cgs to uid:gid (an unprivileged
// guest's root), as a container manager delegates a cgroup: the
// directory and the files that move processes and (cgroup v2) enable
// controllers below it. The guest can then make and manage cgroups below
// its own, but not touch its limits and device policy, which sit on the
// parent, subhost/NAME.
func Delegate(cgs []sdk.Cgroup, uid, gid int) error {
	var errs []error
	for _, d := range GuestDirs(cgs) {
		for _, name := range []string{"", "cgroup.procs", "tasks", "cgroup.threads", "cgroup.subtree_control"} {
			err := os.Lchown(filepath.Join(d, name), uid, gid)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// exists reports whether path may be there: anything but "no such
// file" counts, so that a doubt means the full sweep.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
