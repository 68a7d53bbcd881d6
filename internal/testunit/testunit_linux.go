package testunit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/mountinfo"
)

// Leaf is the supervisor's cgroup below a delegated unit's
// (cgroups.Leaf), which systemd, not subhost, removes.
const Leaf = "supervisor"

// Unit is a scratch service cgroup.
type Unit struct {
	// Path is the unit's cgroup relative to each hierarchy's root, as
	// /proc/PID/cgroup shows it: /SLICE.slice/UNIT.service.
	Path string
	// V2 is its directory in the cgroup2 tree; Systemd in name=systemd,
	// "" when that hierarchy is not mounted.
	V2, Systemd string
}

// made numbers the units of this process: each has a slice of its own.
var made atomic.Int32

// New makes the scratch unit unit (e.g. "subhost@x.service") in a slice
// of its own, delegated or not. It skips the test where no cgroup2 tree
// is mounted.
func New(t testing.TB, unit string, delegated bool) *Unit {
	t.Helper()
	v2, sd := mounts(t)
	if v2 == "" {
		t.Skip("no cgroup2 tree is mounted here")
	}
	slice := fmt.Sprintf("/subhosttest%d-%d.slice", os.Getpid(), made.Add(1))
	u := &Unit{Path: slice + "/" + unit, V2: filepath.Join(v2, slice, unit)}
	if sd != "" {
		u.Systemd = filepath.Join(sd, slice, unit)
	}
	t.Cleanup(func() { u.remove(t, filepath.Join(v2, slice), filepath.Join(sd, slice)) })
	for _, d := range u.dirs() {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if delegated {
		if err := unix.Setxattr(u.V2, "trusted.delegate", []byte("1"), 0); err != nil {
			t.Fatalf("mark %s delegated: %v", u.V2, err)
		}
	}
	return u
}

func (u *Unit) dirs() []string {
	if u.Systemd == "" {
		return []string{u.V2}
	}
	return []string{u.V2, u.Systemd}
}

// mounts finds the cgroup2 tree and the name=systemd hierarchy.
func mounts(t testing.TB) (v2, systemd string) {
	t.Helper()
	es, err := mountinfo.Read("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		switch {
		case e.Root != "/":
		case e.FSType == "cgroup2" && v2 == "":
			v2 = e.Mountpoint
		case e.FSType == "cgroup" && slices.Contains(strings.Split(e.Super, ","), "name=systemd") && systemd == "":
			systemd = e.Mountpoint
		}
	}
	return v2, systemd
}

// Wrap makes cmd (not yet started) start in the unit's cgroups, as
// systemd starts a service's ExecStart: through sh, which moves itself
// there and then execs cmd, keeping its PID.
func (u *Unit) Wrap(cmd *exec.Cmd) {
	var script strings.Builder
	for _, d := range u.dirs() {
		fmt.Fprintf(&script, "echo $$ > %s/cgroup.procs || exit 97\n", d)
	}
	script.WriteString(`exec "$@"`)
	cmd.Args = append([]string{"sh", "-c", script.String(), "sh", cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
}

// CgroupOf is pid's cgroup in a hierarchy as /proc/PID/cgroup names it
// ("" for the cgroup2 tree, else its controllers: "memory",
// "name=systemd"), "" when it has none.
func CgroupOf(pid int, hierarchy string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	for _, line := range strings.Split(string(b), "\n") {
		id, rest, _ := strings.Cut(line, ":")
		ctrls, path, ok := strings.Cut(rest, ":")
		if ok && ctrls == hierarchy && (hierarchy != "" || id == "0") {
			return path
		}
	}
	return ""
}

// Left lists the cgroups below the unit's, relative to it, in every
// hierarchy, except the leaf the supervisor ran in (keep), which
// systemd removes with the unit.
func (u *Unit) Left(keep string) []string {
	var out []string
	for _, d := range u.dirs() {
		filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			rel := strings.TrimPrefix(path, d+"/")
			if err == nil && e.IsDir() && path != d && rel != keep {
				out = append(out, path)
			}
			return nil
		})
	}
	return out
}

// remove fails the test for cgroups left below the unit's but the
// supervisor's leaf, kills what is left in them and removes them, the
// unit's and the slices, deepest first.
func (u *Unit) remove(t testing.TB, sliceDirs ...string) {
	if left := u.Left(Leaf); len(left) > 0 {
		t.Errorf("left below the unit's cgroup: %q", left)
	}
	for _, d := range u.dirs() {
		os.WriteFile(filepath.Join(d, "cgroup.kill"), []byte("1"), 0) // cgroup2
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := rmdirAll(d)
			if err == nil || time.Now().After(deadline) {
				if err != nil {
					t.Errorf("remove the scratch unit's cgroup: %v", err)
				}
				break
			}
			killAll(d) // name=systemd has no cgroup.kill
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, s := range sliceDirs {
		if err := unix.Rmdir(s); err != nil && !errors.Is(err, unix.ENOENT) {
			t.Errorf("remove the scratch slice: %v", err)
		}
	}
}

func rmdirAll(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := rmdirAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("rmdir %s: %w", dir, err)
	}
	return nil
}

func killAll(dir string) {
	filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		return nil
	})
}
