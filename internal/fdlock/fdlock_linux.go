// Package fdlock takes flock(2) locks on files already open, which the
// caller chose how to open (a directory, an image it must not create, a
// lock file made with O_NOFOLLOW): gofrs/flock, which the state package
// uses, opens and creates its file by path itself.
package fdlock

import (
	"os"

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
