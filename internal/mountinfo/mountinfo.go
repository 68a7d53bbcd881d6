package mountinfo

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Entry is one line of a mountinfo file.
type Entry struct {
	ID, Parent   int
	Major, Minor uint32
	// Root is the directory of the filesystem this mount shows (not "/"
	// for a bind mount), Mountpoint where it is mounted.
	Root, Mountpoint string
	FSType, Source   string
	// Super holds the superblock options, e.g. an overlay's layers.
	Super string
	// Optional are the propagation fields: "shared:N", "master:N"...
	Optional []string
}

// Self reads the calling process's mount table.
func Self() ([]Entry, error) { return Read("/proc/self/mountinfo") }

// Read reads a mountinfo file, such as /proc/PID/mountinfo for the mount
// namespace of process PID.
func Read(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

// Parse parses proc(5) mountinfo lines:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func Parse(r io.Reader) ([]Entry, error) {
	var out []Entry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		e, ok := parseLine(sc.Text())
		if !ok {
			return nil, fmt.Errorf("mountinfo: malformed line %q", sc.Text())
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// parseLine splits a line at single spaces, by position, as the kernel
// writes it: every field is escaped (a space in a path is \040), so none
// holds a space, but the mount source may be empty. `mount -t tmpfs ""
// /x` gives "- tmpfs  rw,size=4k", and splitting at runs of blanks would
// take the superblock options for the source.
func parseLine(line string) (Entry, bool) {
	var e Entry
	f := strings.Split(line, " ")
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || sep+2 >= len(f) || slices.Contains(f[:sep], "") || f[sep+1] == "" {
		return e, false
	}
	var err error
	if e.ID, err = strconv.Atoi(f[0]); err != nil {
		return e, false
	}
	if e.Parent, err = strconv.Atoi(f[1]); err != nil {
		return e, false
	}
	major, minor, ok := strings.Cut(f[2], ":")
	if !ok {
		return e, false
	}
	maj, err1 := strconv.ParseUint(major, 10, 32)
	min, err2 := strconv.ParseUint(minor, 10, 32)
	if err1 != nil || err2 != nil {
		return e, false
	}
	e.Major, e.Minor = uint32(maj), uint32(min)
	e.Root, e.Mountpoint = unescape(f[3]), unescape(f[4])
	e.FSType, e.Source = unescape(f[sep+1]), unescape(f[sep+2])
	e.Optional = f[6:sep]
	// The superblock options are the rest of the line.
	e.Super = strings.Join(f[sep+3:], " ")
	return e, true
}

// unescape undoes the kernel's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// TopAt returns the mount visible at mountpoint, or nil when nothing is
// mounted there. Of the mounts on that path, it is one no other mount on
// the same path is stacked on; the kernel lists mounts in the order they
// were made, so where two qualify (one mounted there before its parent
// was covered, so hidden) the later one is visible.
func TopAt(mounts []Entry, mountpoint string) *Entry {
	var at []*Entry
	for i := range mounts {
		if mounts[i].Mountpoint == mountpoint {
			at = append(at, &mounts[i])
		}
	}
	for i := len(at) - 1; i >= 0; i-- {
		covered := false
		for _, n := range at {
			if n.Parent == at[i].ID {
				covered = true
				break
			}
		}
		if !covered {
			return at[i]
		}
	}
	return nil
}

// ByID returns the mount with that ID, or nil.
func ByID(mounts []Entry, id int) *Entry {
	for i := range mounts {
		if mounts[i].ID == id {
			return &mounts[i]
		}
	}
	return nil
}

// Mountpoints lists where the filesystem on block device major:minor is
// mounted (Device), in table order.
func Mountpoints(mounts []Entry, major, minor uint32) []string {
	var out []string
	for _, m := range mounts {
		if maj, min := m.Device(); maj == major && min == minor {
			out = append(out, m.Mountpoint)
		}
	}
	return out
}
