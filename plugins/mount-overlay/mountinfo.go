package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
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

// sharedGroup is the peer group of a shared mount, "" for none.
func (e mountEntry) sharedGroup() string { return e.optional("shared:") }

// masterGroup is the peer group a slave mount receives from, "" for none.
func (e mountEntry) masterGroup() string { return e.optional("master:") }

func (e mountEntry) optional(prefix string) string {
	for _, o := range e.Optional {
		if g, ok := strings.CutPrefix(o, prefix); ok {
			return g
		}
	}
	return ""
}

// readMountinfo reads the calling process's mount table.
func readMountinfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f)
}

// parseMountinfo parses proc(5) mountinfo lines:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 7 || sep < 0 || sep+2 >= len(f) {
			return nil, fmt.Errorf("mountinfo: malformed line %q", sc.Text())
		}
		var e mountEntry
		var err error
		if e.ID, err = strconv.Atoi(f[0]); err != nil {
			return nil, fmt.Errorf("mountinfo: malformed line %q", sc.Text())
		}
		if e.Parent, err = strconv.Atoi(f[1]); err != nil {
			return nil, fmt.Errorf("mountinfo: malformed line %q", sc.Text())
		}
		if _, err := fmt.Sscanf(f[2], "%d:%d", &e.Major, &e.Minor); err != nil {
			return nil, fmt.Errorf("mountinfo: malformed line %q", sc.Text())
		}
		e.Root, e.Mountpoint = unescape(f[3]), unescape(f[4])
		e.FSType, e.Source = unescape(f[sep+1]), unescape(f[sep+2])
		e.Optional = f[6:sep]
		if sep+3 < len(f) {
			e.Super = f[sep+3]
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// unescape undoes the kernel's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1:i+4]) {
			n, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '7' {
			return false
		}
	}
	return true
}

// superOptions splits the superblock options into key and value pairs,
// in order (an overlay repeats "lowerdir+"). The kernel escapes commas
// inside values, so splitting at commas is exact.
func (e mountEntry) superOptions() [][2]string {
	var out [][2]string
	for _, o := range strings.Split(e.Super, ",") {
		k, v, _ := strings.Cut(o, "=")
		out = append(out, [2]string{k, unescape(v)})
	}
	return out
}

// option returns the last value of a superblock option, and whether it
// is there.
func (e mountEntry) option(key string) (string, bool) {
	v, ok := "", false
	for _, kv := range e.superOptions() {
		if kv[0] == key {
			v, ok = kv[1], true
		}
	}
	return v, ok
}

// overlayLayers returns an overlay's lower, upper and work directories as
// mountinfo shows them: "lowerdir+=" once per layer when the layers were
// given one by one (as we do), or "lowerdir=a:b" (colons inside a path
// escaped as "\:").
func (e mountEntry) overlayLayers() (lowers []string, upper, work string) {
	for _, kv := range e.superOptions() {
		switch kv[0] {
		case "lowerdir+":
			lowers = append(lowers, kv[1])
		case "lowerdir":
			lowers = append(lowers, splitLowerdir(kv[1])...)
		case "upperdir":
			upper = kv[1]
		case "workdir":
			work = kv[1]
		}
	}
	return lowers, upper, work
}

// splitLowerdir splits a legacy lowerdir= list at unescaped colons; "::"
// (data-only layers follow) is a separator too.
func splitLowerdir(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case s[i] == ':':
			if cur.Len() > 0 {
				out = append(out, cur.String())
			}
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// topAt returns the mount that is visible at mountpoint (the last one
// stacked there), or nil when nothing is mounted there.
func topAt(mounts []mountEntry, mountpoint string) *mountEntry {
	var at []*mountEntry
	for i := range mounts {
		if mounts[i].Mountpoint == mountpoint {
			at = append(at, &mounts[i])
		}
	}
	for _, m := range at {
		covered := false
		for _, n := range at {
			if n.Parent == m.ID {
				covered = true
				break
			}
		}
		if !covered {
			return m
		}
	}
	return nil
}

// byID returns the mount with that ID, or nil.
func byID(mounts []mountEntry, id int) *mountEntry {
	for i := range mounts {
		if mounts[i].ID == id {
			return &mounts[i]
		}
	}
	return nil
}
