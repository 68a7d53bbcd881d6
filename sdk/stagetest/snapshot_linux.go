package stagetest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/sdk"
)

// Snapshot is the set of host objects a subhost could leave behind, each
// as one comparable line.
type Snapshot struct {
	Mounts  []string // "MOUNTPOINT FSTYPE SOURCE" from /proc/self/mountinfo
	Loops   []string // "loopN BACKING-FILE" for every attached loop device
	Netns   []string // entries of /run/netns
	Links   []string // network interfaces of the current network namespace
	Plugins []string // "PID CMDLINE" of every running stage plugin process
	Cgroups []string // directories under subhost/ in every mounted cgroup hierarchy
	// Userns are unprivileged subhosts' leftovers: pinned user
	// namespaces' files under /run/subhost/.userns (the default state
	// root's; their bind mounts, wherever they are, are Mounts) and the
	// owners of ranges in /run/subhost/.idranges.
	Userns []string
}

// Take reads the host's current objects.
func Take() (Snapshot, error) {
	var s Snapshot
	var err error
	if s.Mounts, err = mounts(); err != nil {
		return s, err
	}
	if s.Loops, err = loops(); err != nil {
		return s, err
	}
	if s.Netns, err = netnsNames(); err != nil {
		return s, err
	}
	if s.Links, err = links(); err != nil {
		return s, err
	}
	if s.Plugins, err = pluginProcesses(); err != nil {
		return s, err
	}
	if s.Cgroups, err = subhostCgroups(); err != nil {
		return s, err
	}
	if s.Userns, err = usernsObjects(); err != nil {
		return s, err
	}
	return s, nil
}

// Diff lists what differs from before, as "+ kind: object" (appeared)
// and "- kind: object" (vanished) lines; empty when the host is the same.
func (s Snapshot) Diff(before Snapshot) []string {
	var out []string
	for _, k := range []struct {
		kind    string
		was, is []string
		// appearedOnly: an object of this kind that went away is no
		// change to report. A plugin process killed by an earlier test
		// (its group is killed, its reaping is asynchronous) may still be
		// there when the next test takes its first snapshot; its going
		// is not this test's doing.
		appearedOnly bool
	}{
		{"mount", before.Mounts, s.Mounts, false},
		{"loop", before.Loops, s.Loops, false},
		{"netns", before.Netns, s.Netns, false},
		{"link", before.Links, s.Links, false},
		{"plugin process", before.Plugins, s.Plugins, true},
		{"cgroup", before.Cgroups, s.Cgroups, false},
		{"user namespace", before.Userns, s.Userns, false},
	} {
		for _, x := range k.is {
			if !slices.Contains(k.was, x) {
				out = append(out, "+ "+k.kind+": "+x)
			}
		}
		for _, x := range k.was {
			if !k.appearedOnly && !slices.Contains(k.is, x) {
				out = append(out, "- "+k.kind+": "+x)
			}
		}
	}
	return out
}

// NoLeaks takes a snapshot now and, when the test ends, fails it if the
// host differs. Call it first in a test, so that its check runs after
// every other cleanup. Objects the kernel frees asynchronously (an
// autoclear loop device, a netns whose last user exits) get a short grace.
//
// The comparison is host-wide: run such tests with `go test -p 1`.
func NoLeaks(t testing.TB) {
	t.Helper()
	before, err := Take()
	if err != nil {
		t.Fatalf("host snapshot: %v", err)
	}
	t.Cleanup(func() {
		var diff []string
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			now, err := Take()
			if err != nil {
				t.Errorf("host snapshot: %v", err)
				return
			}
			if diff = now.Diff(before); len(diff) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(diff) > 0 {
			t.Errorf("the test left the host changed:\n  %s", strings.Join(diff, "\n  "))
		}
	})
}

func mounts() ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	netnsSetUp := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source superopts
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			continue
		}
		if !netnsSetUp && isNetnsSetUp(f[3], f[4], f[sep+1]) {
			netnsSetUp = true
			continue
		}
		out = append(out, fmt.Sprintf("%s %s %s", f[4], f[sep+1], f[sep+2]))
	}
	slices.Sort(out)
	return out, sc.Err()
}

// isNetnsSetUp recognises the mount that the first network namespace
// made on a host leaves behind: iproute2 (and net-veth, which does as it
// does) bind-mounts /run/netns onto itself, so that the namespaces pinned
// under it can be made shared. That mount is host set-up, not an object of
// any subhost, so a test that happens to make the first namespace on a
// fresh machine has not leaked it. Only that one self-bind is passed over:
// anything else mounted on /run/netns, and the nsfs mounts of the
// namespaces in it, still count.
func isNetnsSetUp(root, mountpoint, fstype string) bool {
	return mountpoint == "/run/netns" && fstype != "nsfs" && (root == "/netns" || strings.HasSuffix(root, "/run/netns"))
}

func loops() ([]string, error) {
	paths, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // detached between glob and read
		}
		dev := filepath.Base(filepath.Dir(filepath.Dir(p)))
		out = append(out, dev+" "+strings.TrimSpace(string(b)))
	}
	slices.Sort(out)
	return out, nil
}

func netnsNames() ([]string, error) {
	entries, err := os.ReadDir("/run/netns")
	if os.IsNotExist(err) {
		return nil, nil
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out, err
}

func links() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, i := range ifs {
		out = append(out, i.Name)
	}
	slices.Sort(out)
	return out, nil
}

// pluginProcesses finds stage plugins by the handshake cookie that the
// runner puts in every plugin's environment, and the exec stage's scripts
// (and what they started and left running) by the SUBHOST_STAGE variable
// it gives them.
func pluginProcesses() ([]string, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	cookie := []byte(sdk.MagicCookieKey + "=")
	script := []byte("\x00SUBHOST_STAGE=")
	var out []string
	for _, d := range dirs {
		env, err := os.ReadFile(d + "/environ")
		if err != nil || !bytes.Contains(env, cookie) && !bytes.Contains(append([]byte{0}, env...), script) {
			continue
		}
		cmd, _ := os.ReadFile(d + "/cmdline")
		out = append(out, filepath.Base(d)+" "+strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))))
	}
	return out, nil
}

// subhostCgroups lists every directory under subhost/ at the root of each
// mounted cgroup hierarchy (v1 and cgroup2), where subhosts' cgroups live,
// and every subhost/ directory and below in a systemd service's cgroup
// under a slice (SLICE.slice/.../UNIT.service/subhost), where they live
// when the service delegates its cgroup to `run --supervise`.
func subhostCgroups() ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) || f[3] != "/" || (f[sep+1] != "cgroup" && f[sep+1] != "cgroup2") {
			continue
		}
		top := filepath.Join(f[4], "subhost")
		filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && path != top {
				out = append(out, path)
			}
			return nil
		})
		sliceDirs, _ := filepath.Glob(filepath.Join(f[4], "*.slice"))
		for _, sl := range sliceDirs {
			filepath.WalkDir(sl, func(path string, d os.DirEntry, err error) error {
				_, rest, found := strings.Cut(path, ".service/subhost")
				if err == nil && d.IsDir() && found && (rest == "" || rest[0] == '/') {
					out = append(out, path)
				}
				return nil
			})
		}
	}
	slices.Sort(out)
	return slices.Compact(out), sc.Err()
}

// usernsObjects lists the userns stage's pins and registered id ranges.
func usernsObjects() ([]string, error) {
	var out []string
	ents, err := os.ReadDir("/run/subhost/.userns")
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	for _, e := range ents {
		out = append(out, "pin "+e.Name())
	}
	data, err := os.ReadFile("/run/subhost/.idranges")
	if os.IsNotExist(err) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	var ranges []struct {
		Name string `json:"name"`
		Home string `json:"home"`
		Base uint32 `json:"base"`
	}
	if err := json.Unmarshal(data, &ranges); err != nil {
		return nil, fmt.Errorf("/run/subhost/.idranges: %w", err)
	}
	for _, r := range ranges {
		out = append(out, fmt.Sprintf("id range %d of %s (%s)", r.Base, r.Name, r.Home))
	}
	return out, nil
}
