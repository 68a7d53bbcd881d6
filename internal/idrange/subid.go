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

// subIDRange is one range of a subuid/subgid file, named for messages.
type subIDRange struct {
	Range
	where string
}

// readSubIDs reads the "user:start:count" lines of each file; a missing
// file has none. A line that does not parse is skipped (shadow-utils
// skips it too), but a range that does not fit in 32 bits is clipped
// rather than lost.
func readSubIDs(files []string) ([]subIDRange, error) {
	var out []subIDRange
	for _, file := range files {
		f, err := os.Open(file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		sc := bufio.NewScanner(f)
		for line := 1; sc.Scan(); line++ {
			fields := strings.Split(strings.TrimSpace(sc.Text()), ":")
			if len(fields) != 3 || strings.HasPrefix(fields[0], "#") {
				continue
			}
			start, err1 := strconv.ParseUint(fields[1], 10, 32)
			count, err2 := strconv.ParseUint(fields[2], 10, 64)
			if err1 != nil || err2 != nil || count == 0 {
				continue
			}
			count = min(count, 1<<32-1-start)
			out = append(out, subIDRange{Range{Base: uint32(start), Size: uint32(count)}, fmt.Sprintf("%s:%d (user %s)", file, line, fields[0])})
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
	}
	return out, nil
}
