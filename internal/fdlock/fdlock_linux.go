// Package fdlock takes flock(2) locks on files already open, which the
// caller chose how to open (a lock file made with O_NOFOLLOW), and on
// lock files of root's own (Named): gofrs/flock, which the state package
// uses, opens and creates its file by path itself.
package fdlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Exclusive waits for an exclusive lock on f, which lasts until f is
// closed (or every descriptor of its open file is). A signal that
// interrupts the wait does not end it.
func Exclusive(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}

// Named waits for an exclusive lock on the lock file at path, made mode
// 0600 (and its directory 0700) when missing, and returns what releases
// it. The directory must be one only the caller's user can write, such
// as /run/subhost: then no one else can open the file, so no one else
// can take the lock. A lock on a file other users may open (a 0755
// directory like /run/netns, an image file others may read) is one any
// local user can take with flock(1) and hold for ever, and every caller
// would wait for it.
//
// The release removes the file, under the lock, so that locks named after
// ever new keys (image files' device and inode) leave nothing behind. A
// caller that waited on a file removed meanwhile sees so once it has the
// lock and takes the lock anew on the file now at path.
func Named(path string) (release func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, err
		}
		var held, now unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &held); err != nil {
			f.Close()
			return nil, err
		}
		if int(held.Uid) != os.Geteuid() {
			f.Close()
			return nil, fmt.Errorf("lock file %s belongs to uid %d, not to this process's user", path, held.Uid)
		}
		if err := Exclusive(f); err != nil {
			f.Close()
			return nil, err
		}
		err = unix.Stat(path, &now)
		if err == nil && now.Dev == held.Dev && now.Ino == held.Ino {
			return func() {
				os.Remove(path) // still ours: no one else removes it while we hold it
				f.Close()
			}, nil
		}
		f.Close()
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, err
		}
		// Removed (and perhaps made anew) by the holder we waited for.
	}
}

// RemoveIfFree removes the lock file at path that a holder killed before
// its release left behind: only when it is this process's user's and
// nobody holds its lock, taken without waiting, and removed under it as
// Named's release does. It reports whether it removed the file.
func RemoveIfFree(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	var held, now unix.Stat_t
	if unix.Fstat(int(f.Fd()), &held) != nil || int(held.Uid) != os.Geteuid() {
		return false
	}
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false // held: its holder removes it
	}
	if unix.Stat(path, &now) != nil || now.Dev != held.Dev || now.Ino != held.Ino {
		return false // removed, or made anew, meanwhile
	}
	return os.Remove(path) == nil
}
