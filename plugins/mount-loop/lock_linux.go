package main

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/fdlock"
	"github.com/subhost/subhost/internal/state"
)

// lockDir holds the images' lock files: the state root, whatever the
// runner's --state-dir, since subhosts of two runners may name one image.
// Tests point it at a scratch directory.
var lockDir = state.DefaultRoot

// fileID is a file's identity: its file system's device and its inode.
type fileID struct{ dev, ino uint64 }

// lockFile is the lock file of the image file id.
func (id fileID) lockFile() string {
	return filepath.Join(lockDir, fmt.Sprintf(".image-%d:%d-%d.lock", unix.Major(id.dev), unix.Minor(id.dev), id.ino))
}

// lockImages takes an exclusive lock on each of sp's image files, as
// their paths name them now, and returns them by DISKS index with what
// releases the locks. Up holds them from its survey through its
// attaches: two subhosts naming one image (a copied config) and booting
// at once must not both find it free before either has attached it, and
// mount one file system twice read-write. A path that names no regular
// file is left to the survey, which reports it.
//
// The locks are lock files of root's named after each image's device and
// inode (fdlock.Named), not the images: any user who may read an image
// could flock it and hold it for ever, and every boot naming it would
// wait. They are taken in the order of the files' identities, not of
// their paths (a symlink may name one file two ways), so that two Ups
// cannot wait for each other.
func lockImages(sp *spec) (locked map[int]fileID, unlock func(), err error) {
	locked = map[int]fileID{}
	var ids []fileID
	for _, d := range sp.Disks {
		var st unix.Stat_t
		if unix.Stat(d.Image, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		id := fileID{st.Dev, st.Ino}
		locked[d.Index] = id
		if !slices.Contains(ids, id) { // one file named twice (refused later): one lock
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b fileID) int {
		return cmp.Or(cmp.Compare(a.dev, b.dev), cmp.Compare(a.ino, b.ino))
	})
	var releases []func()
	unlock = func() {
		for _, r := range slices.Backward(releases) {
			r()
		}
	}
	for _, id := range ids {
		release, err := fdlock.Named(id.lockFile())
		if err != nil {
			unlock()
			return nil, nil, err
		}
		releases = append(releases, release)
	}
	return locked, unlock, nil
}

// notLocked returns an image the survey inspected that is not the file
// lockImages locked for its element: a new file renamed over the path
// (an image rebuilt and moved into place) between the two. Another Up
// could then lock that file and find it free as this one did.
func notLocked(imgs []image, locked map[int]fileID) (image, bool) {
	for _, im := range imgs {
		if locked[im.Index] != (fileID{im.dev, im.ino}) {
			return im, true
		}
	}
	return image{}, false
}

// removeStaleLocks removes the lock files of the images that an Up killed
// while it held them left behind (its release removes them otherwise).
func removeStaleLocks(images []string) {
	for _, img := range images {
		var st unix.Stat_t
		if unix.Stat(img, &st) == nil {
			fdlock.RemoveIfFree(fileID{st.Dev, st.Ino}.lockFile())
		}
	}
}
