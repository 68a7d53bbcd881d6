package holders

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/mountinfo"
)

// Target is what to look for. Zero fields are not looked for.
type Target struct {
	// FS is a filesystem's device number (unix.Mkdev of its mountinfo
	// major:minor): a process holds it when its cwd, root, executable,
	// an open file or a mapped file is on that filesystem.
	FS uint64
	// Block is a block device's number: a process holds it when it has
	// the device node open.
	Block uint64
	// Path is a directory or file as the caller sees it: a process holds
	// it when its cwd, root, executable, an open file or a mapped file is
	// at or under Path, as the caller reads the process's links. A
	// process in another mount namespace shows other paths.
	Path string
	// Namespaces also looks for mount namespaces other than the caller's
	// that mount FS or Block.
	Namespaces bool
}

// Use is one way a process holds the target.
type Use struct {
	// What is "cwd", "root", "exe", "fd N" or "maps".
	What string
	// Path is the path the process has there, as the caller reads it.
	Path string
}

func (u Use) String() string { return u.What + " " + u.Path }

// Holder is a process that holds the target, or the first process found
// in a mount namespace that mounts it.
type Holder struct {
	PID  int
	Comm string
	// Uses lists, in the order cwd, root, exe, open files by descriptor,
	// the first mapped file, how the process holds the target.
	Uses []Use
	// MountedAt is, with Target.Namespaces, where the process's mount
	// namespace mounts the target ("" when it is the caller's or does
	// not). It is given once per namespace, for its first process.
	MountedAt string
}

// Who names the process: "pid 12 (bash)".
func (h Holder) Who() string { return fmt.Sprintf("pid %d (%s)", h.PID, h.Comm) }

// Find lists the holders of t, ordered by their /proc entries' names.
func Find(t Target) []Holder {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	selfNs, _ := os.Readlink("/proc/self/ns/mnt")
	seenNs := map[string]bool{selfNs: true}
	var out []Holder
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		h := Holder{PID: pid, Uses: t.uses(p)}
		if t.Namespaces {
			if ns, err := os.Readlink(p + "/ns/mnt"); err == nil && !seenNs[ns] {
				seenNs[ns] = true
				h.MountedAt = t.mountedIn(p + "/mountinfo")
			}
		}
		if len(h.Uses) == 0 && h.MountedAt == "" {
			continue
		}
		comm, _ := os.ReadFile(p + "/comm")
		h.Comm = strings.TrimSpace(string(comm))
		out = append(out, h)
	}
	return out
}

// uses lists how the process at proc (/proc/PID) holds t.
func (t Target) uses(proc string) []Use {
	var out []Use
	for _, l := range []string{"cwd", "root", "exe"} {
		if target, ok := t.holds(proc+"/"+l, false); ok {
			out = append(out, Use{l, target})
		}
	}
	fds, _ := os.ReadDir(proc + "/fd")
	for _, fd := range fds {
		if target, ok := t.holds(proc+"/fd/"+fd.Name(), true); ok {
			out = append(out, Use{"fd " + fd.Name(), target})
		}
	}
	if m := t.mapped(proc + "/maps"); m != "" {
		out = append(out, Use{"maps", m})
	}
	return out
}

// holds reports whether the magic link at link (cwd, root, exe or an fd)
// leads to t, and where the link points. open says whether an open block
// device node counts.
func (t Target) holds(link string, open bool) (string, bool) {
	target, err := os.Readlink(link)
	if err != nil {
		return "", false
	}
	if t.Path != "" && within(target, t.Path) {
		return target, true
	}
	if t.FS == 0 && (t.Block == 0 || !open) {
		return "", false
	}
	var st unix.Stat_t
	if unix.Stat(link, &st) != nil {
		return "", false
	}
	onFS := t.FS != 0 && st.Dev == t.FS
	isBlock := open && t.Block != 0 && st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == t.Block
	return target, onFS || isBlock
}

// mapped returns the first file in a maps file that lies on t.FS or at
// or under t.Path, or "".
func (t Target) mapped(maps string) string {
	if t.FS == 0 && t.Path == "" {
		return ""
	}
	f, err := os.Open(maps)
	if err != nil {
		return ""
	}
	defer f.Close()
	// The kernel prints the device as %02x:%02x.
	dev := fmt.Sprintf("%02x:%02x", unix.Major(t.FS), unix.Minor(t.FS))
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fl := strings.Fields(sc.Text())
		if len(fl) < 6 {
			continue
		}
		if t.FS != 0 && fl[3] == dev || t.Path != "" && within(fl[5], t.Path) {
			return fl[5]
		}
	}
	return ""
}

// mountedIn returns the first mountpoint in a mountinfo file of t.FS or
// t.Block, or "".
func (t Target) mountedIn(path string) string {
	mounts, _ := mountinfo.Read(path)
	for _, m := range mounts {
		dev := unix.Mkdev(m.Major, m.Minor)
		if t.FS != 0 && dev == t.FS || t.Block != 0 && dev == t.Block {
			return m.Mountpoint
		}
	}
	return ""
}

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}
