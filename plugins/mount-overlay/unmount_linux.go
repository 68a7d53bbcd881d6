package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/holders"
	"github.com/subhost/subhost/internal/mountinfo"
)

// unmountTree unmounts the top mount on mountpoint and everything
// mounted below it, deepest first, each plainly: a busy mount is an
// error naming what holds it, never lazily detached. A mount stacked
// beneath the top one is not touched: it may be someone else's. parent
// is the directory that holds mountpoint (HOME). Paths below mountpoint
// lie in a tenant's tree, so each is reached from an opened parent
// directory without following symlinks.
func unmountTree(parent *dir, mountpoint string, mounts []mountinfo.Entry) error {
	top := mountinfo.TopAt(mounts, mountpoint)
	if top == nil {
		return nil
	}
	todo := []mountinfo.Entry{*top}
	for i, m := range mounts {
		if m.Mountpoint != mountpoint && within(m.Mountpoint, mountpoint) {
			todo = append(todo, mounts[i])
		}
	}
	// Deeper paths first; on one path, the last mounted (top) first.
	sort.SliceStable(todo, func(i, j int) bool {
		di, dj := strings.Count(todo[i].Mountpoint, "/"), strings.Count(todo[j].Mountpoint, "/")
		if di != dj {
			return di > dj
		}
		return i > j
	})
	for _, m := range todo {
		rel := strings.TrimPrefix(strings.TrimPrefix(m.Mountpoint, mountpoint), "/")
		if err := unmountOne(parent, filepath.Base(mountpoint), rel); err != nil {
			return err
		}
	}
	return nil
}

// unmountOne unmounts HOME/name/rel (rel "" for HOME/name itself). The
// mount point's parent is opened without following symlinks below HOME,
// and the unmount goes through that descriptor, so a symlink a tenant
// puts in the path cannot redirect it to a host mount.
func unmountOne(home *dir, name, rel string) error {
	full := filepath.Join(home.path, name, rel)
	parentRel, base := filepath.Split(filepath.Join(name, rel))
	var parent *dir
	var err error
	if parentRel == "" {
		parent = home
	} else {
		if parent, err = openNoSymlinks(home, parentRel); err != nil {
			return fmt.Errorf("unmount %q: open its parent: %s", full, describeOpenErr(err))
		}
		defer parent.close()
	}
	// The parent is reached through its descriptor; the last component
	// is not followed if it is a symlink.
	err = unix.Unmount(parent.procPath()+"/"+base, unix.UMOUNT_NOFOLLOW)
	switch {
	case err == nil, errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT):
		// Not (or no longer) a mount point.
		return nil
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("unmount %q: busy%s", full, heldBy(full))
	default:
		return fmt.Errorf("unmount %q: %w", full, err)
	}
}

// openNoSymlinks opens rel inside root without following symlinks, but
// crossing mount points (live itself is one).
func openNoSymlinks(root *dir, rel string) (*dir, error) {
	fd, err := unix.Openat2(root.fd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, err
	}
	return newDir(fd)
}

// heldBy lists the processes that use something at or under path (their
// working directory, root, executable, an open file or a mapping), as
// ": held by pid 12 (bash) cwd /x/live/root, ...", or says that it found
// none. Paths, not device numbers: the files of an overlay are its
// layers' files, on other devices.
func heldBy(path string) string {
	const max = 5
	found := holders.Find(holders.Target{Path: path})
	if len(found) == 0 {
		return " (no process found holding it: another mount namespace, or a loop device or mount on it?)"
	}
	var out []string
	for i, h := range found {
		if i == max {
			out = append(out, fmt.Sprintf("and %d more", len(found)-max))
			break
		}
		out = append(out, h.Who()+" "+h.Uses[0].String())
	}
	return ": held by " + strings.Join(out, ", ")
}
