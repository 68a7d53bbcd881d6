package main

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
)

// mountEntry is one line of a mountinfo file.
type mountEntry struct {
	Major, Minor uint32
	Mountpoint   string
	FSType       string
	Source       string
}

func readMountinfo(path string) ([]mountEntry, error) {
	f, err := os.Open(path)
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
			continue
		}
		majmin := strings.SplitN(f[2], ":", 2)
		if len(majmin) != 2 {
			continue
		}
		maj, err1 := strconv.ParseUint(majmin[0], 10, 32)
		min, err2 := strconv.ParseUint(majmin[1], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, mountEntry{
			Major: uint32(maj), Minor: uint32(min),
			Mountpoint: unescape(f[4]),
			FSType:     f[sep+1],
			Source:     unescape(f[sep+2]),
		})
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space...).
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

// mountsOf returns the mountpoints of the filesystem with that device
// number.
func mountsOf(mounts []mountEntry, major, minor uint32) []string {
	var out []string
	for _, m := range mounts {
		if m.Major == major && m.Minor == minor {
			out = append(out, m.Mountpoint)
		}
	}
	return out
}

// topMount returns the mount on top at path, if path is a mountpoint.
func topMount(mounts []mountEntry, path string) (mountEntry, bool) {
	var top mountEntry
	found := false
	for _, m := range mounts {
		if m.Mountpoint == path {
			top, found = m, true // later lines are mounted on top
		}
	}
	return top, found
}
