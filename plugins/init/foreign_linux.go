package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/idrange"
)

// foreignOwners walks the guest root's own file system (not what is
// mounted below it, not following symlinks) for files owned by ids the
// guest's user namespace does not map: they show as nobody inside, and
// its root cannot change them. ids.Base is where the guest's ids start
// as root shows them: 0 for a file system the host sees unmapped, the
// range's base for one the user namespace owns (its overlay, which
// shows unmapped ids as the overflow id). It stops after budget,
// saying so.
func foreignOwners(root string, ids idrange.Range, budget time.Duration) (count int, examples []string, complete bool) {
	var rootDev uint64
	deadline := time.Now().Add(budget)
	errStop := errors.New("stop")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: not ours to judge
		}
		if time.Now().After(deadline) {
			return errStop
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if path == root {
			rootDev = st.Dev
		} else if st.Dev != rootDev {
			return fs.SkipDir
		}
		if st.Uid-ids.Base >= ids.Size || st.Gid-ids.Base >= ids.Size {
			if count++; len(examples) < 5 {
				examples = append(examples, path)
			}
		}
		return nil
	})
	return count, examples, err == nil
}

// ownersCheckedXattr marks a guest root whose owners were all found
// inside a range of the size (and base) it holds.
const ownersCheckedXattr = "trusted.subhost.owners-checked"

// warnForeignOwners logs what foreignOwners finds, before an
// unprivileged guest boots; mapped says that root is a file system the
// guest's user namespace owns (RootUserns).
//
// A complete walk that found nothing leaves a mark on the root directory
// (ownersCheckedXattr, a trusted.* attribute: the guest, root only in its
// own user namespace, can neither set nor remove it), and the next boots
// with the same range size skip the walk: it took 40 ms on a Debian root
// at every boot. Files a guest makes are owned by ids in its range, so
// only the host can add foreign ones after that.
func warnForeignOwners(log hclog.Logger, root string, ids idrange.Range, mapped bool) {
	seen := idrange.Range{Size: ids.Size}
	if mapped {
		seen.Base = ids.Base
	}
	mark := fmt.Sprintf("%d:%d", seen.Base, seen.Size)
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(root, ownersCheckedXattr, buf); err == nil && string(buf[:n]) == mark {
		return
	}
	count, examples, complete := foreignOwners(root, seen, 200*time.Millisecond)
	if count == 0 && complete {
		unix.Setxattr(root, ownersCheckedXattr, []byte(mark), 0) // a file system without xattrs walks every time
	}
	if count > 0 {
		log.Warn("files in the guest root are owned by ids outside its user namespace's range: inside they show as nobody and its root cannot change them (chown them to ids below the range size, or leave them)",
			"count", count, "range_size", ids.Size, "examples", examples)
	}
	if !complete {
		log.Info("the guest root is too large to check every owner before booting; some files may be owned by ids outside its range", "checked_for", "200ms")
	}
}
