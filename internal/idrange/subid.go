package idrange

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// SubIDFiles are the files whose ranges belong to host users
// (shadow-utils' newuidmap/newgidmap, rootless podman).
var SubIDFiles = []string{"/etc/subuid", "/etc/subgid"}

// subIDRange is one range of a subuid/subgid file, or one id of a host
// user or group, with what it is for messages.
type subIDRange struct {
	Range
	what string
}

// readSubIDs reads the "user:start:count" lines of each file; a missing
// file has none. A line that does not parse is skipped (shadow-utils
// skips it too), but a range that does not fit in 32 bits is clipped
// rather than lost.
func readSubIDs(files []string) ([]subIDRange, error) {
	var out []subIDRange
	err := scanColonLines(files, func(file string, line int, fields []string) {
		if len(fields) != 3 {
			return
		}
		start, err1 := strconv.ParseUint(strings.TrimSpace(fields[1]), 10, 32)
		count, err2 := strconv.ParseUint(strings.TrimSpace(fields[2]), 10, 64)
		if err1 != nil || err2 != nil || count == 0 {
			return
		}
		count = min(count, 1<<32-1-start)
		r := Range{Base: uint32(start), Size: uint32(count)}
		out = append(out, subIDRange{r, fmt.Sprintf("%s given at %s:%d (user %s)", r, file, line, strings.TrimSpace(fields[0]))})
	})
	return out, err
}

// scanColonLines calls fn with the colon-separated fields of each line of
// each file that is not a comment, and its file and line number; a
// missing file has none. Lines may be long (a group with many members).
func scanColonLines(files []string, fn func(file string, line int, fields []string)) error {
	for _, file := range files {
		f, err := os.Open(file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", file, err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for line := 1; sc.Scan(); line++ {
			if text := strings.TrimSpace(sc.Text()); text != "" && !strings.HasPrefix(text, "#") {
				fn(file, line, strings.Split(sc.Text(), ":"))
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", file, err)
		}
	}
	return nil
}

// AccountFiles are the host's own users and groups: a range holding one of
// their ids would make that user the owner of the guest's processes and
// files (able to ptrace its root), or the guest's root that user.
var AccountFiles = []string{"/etc/passwd", "/etc/group"}

// readAccounts reads the id (third field) of each "name:x:id:..." line of
// each file, as a range of one; a missing file has none, and a line that
// does not parse is skipped. (Users only a directory service knows are
// not seen: keep them out of the ranges subhost picks from.)
func readAccounts(files []string) ([]subIDRange, error) {
	var out []subIDRange
	err := scanColonLines(files, func(file string, line int, fields []string) {
		if len(fields) < 4 {
			return
		}
		if id, err := strconv.ParseUint(fields[2], 10, 32); err == nil {
			out = append(out, subIDRange{Range{Base: uint32(id), Size: 1}, fmt.Sprintf("id %d of %s at %s:%d", id, fields[0], file, line)})
		}
	})
	return out, err
}
