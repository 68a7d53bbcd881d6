package main

import (
	"cmp"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/fdlock"
)

// lockImages takes an exclusive flock on each of sp's image files and
// returns what releases them. Up holds them from its survey through its
// attaches: two subhosts naming one image (a copied config) and booting
// at once must not both find it free before either has attached it, and
// mount one file system twice read-write. The locks are taken in the
// order of the files' identities, not of their paths (a symlink may name
// one file two ways), so that two Ups cannot wait for each other. A path
// that does not open is left to the survey, which reports it.
func lockImages(sp *spec) (unlock func(), err error) {
	type held struct {
		f        *os.File
		dev, ino uint64
	}
	var files []held
	unlock = func() {
		for _, h := range files {
			h.f.Close() // releases its flock
		}
	}
	for _, d := range sp.Disks {
		f, err := os.OpenFile(d.Image, os.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			f.Close()
			continue
		}
		files = append(files, held{f, st.Dev, st.Ino})
	}
	slices.SortFunc(files, func(a, b held) int {
		return cmp.Or(cmp.Compare(a.dev, b.dev), cmp.Compare(a.ino, b.ino))
	})
	for i, h := range files {
		if i > 0 && h.dev == files[i-1].dev && h.ino == files[i-1].ino {
			continue // one file named twice (refused later): one lock
		}
		if err := fdlock.Exclusive(h.f); err != nil {
			unlock()
			return nil, err
		}
	}
	return unlock, nil
}
