package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"
)

// ErrBusy is returned (wrapped) when another operation holds the lock.
var ErrBusy = errors.New("busy")

// Lock is one operation's hold on a subhost.
type Lock struct {
	dir       Dir
	operation string
	lock      *flock.Flock
	suspended bool
}

// Holder says which process holds a subhost's lock, as it wrote it.
type Holder struct {
	PID       int
	Operation string
}

func (h Holder) String() string {
	if h.PID == 0 {
		return "another process"
	}
	return fmt.Sprintf("pid %d (%s)", h.PID, h.Operation)
}

// TryLock takes the subhost's lock without waiting. When another process
// holds it, the error wraps ErrBusy and names the holder's PID and
// operation. The lock file's content is "PID OPERATION" of the holder.
func (d Dir) TryLock(operation string) (*Lock, error) {
	if err := ForgetEarlierBoot(d.Root); err != nil {
		return nil, err
	}
	if err := d.makeDir(); err != nil {
		return nil, err
	}
	path := filepath.Join(d.path(), "lock")
	for attempt := 0; ; attempt++ {
		fl := flock.New(path, flock.SetPermissions(0o600))
		ok, err := fl.TryLock()
		if errors.Is(err, fs.ErrNotExist) && attempt < lockRetries {
			// The holder released it and removed the directory
			// between the MkdirAll and the open: make it again.
			if err := d.makeDir(); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !ok {
			h, _ := d.Holder()
			return nil, d.BusyError(h)
		}
		// The previous holder may have removed the file (and its
		// directory) after we opened it: then we hold a lock on an inode
		// nobody else will ever see. Retry on the new file.
		held, err1 := fl.Stat()
		now, err2 := os.Stat(path)
		if err1 != nil || err2 != nil || !os.SameFile(held, now) {
			fl.Close()
			if attempt >= lockRetries {
				return nil, fmt.Errorf("lock %s: it keeps being replaced", path)
			}
			if err := d.makeDir(); err != nil {
				return nil, err
			}
			continue
		}
		l := &Lock{dir: d, lock: fl, operation: operation}
		l.SetOperation(operation)
		return l, nil
	}
}

// lockRetries bounds TryLock's tries when the lock file or its directory
// goes between its steps. Each such try means another holder released the
// lock and removed them meanwhile, so the count is only a guard against a
// loop: 10 in all, for both reasons, ran out in a test where two lockers
// take and release the lock a thousand times against each other on a busy
// machine.
const lockRetries = 100

// WaitLock takes the subhost's lock, waiting up to wait for whoever holds
// it.
func (d Dir) WaitLock(ctx context.Context, operation string, wait time.Duration) (*Lock, error) {
	l := &Lock{dir: d, operation: operation, suspended: true}
	if err := l.Resume(ctx, wait); err != nil {
		return nil, err
	}
	return l, nil
}

// SetOperation records what the holder is doing (e.g. "run" becomes
// "supervise").
func (l *Lock) SetOperation(operation string) {
	content := fmt.Sprintf("%d %s\n", os.Getpid(), operation)
	f, err := os.OpenFile(l.lock.Path(), os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	// Written over in place and then cut to length, rather than
	// truncated first: ext4 writes out at close a file truncated to
	// nothing and rewritten, and freeing those blocks at the next write
	// is a discard to wait for where /run is on ext4 mounted with
	// discard (see atomicfile.Replace). A reader meanwhile may see the
	// old content's tail after the new line; Holder reads the first
	// line only.
	if _, err := f.WriteAt([]byte(content), 0); err == nil {
		f.Truncate(int64(len(content)))
	}
}

// Holder reads who holds (or last held) the lock.
func (d Dir) Holder() (Holder, error) {
	data, err := os.ReadFile(filepath.Join(d.path(), "lock"))
	if err != nil {
		return Holder{}, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	pid, op, _ := strings.Cut(strings.TrimSpace(line), " ")
	n, _ := strconv.Atoi(pid)
	return Holder{PID: n, Operation: op}, nil
}

// Tidy removes what an operation killed before its first save leaves
// behind, the subhost's directory with its lock file (and a stop request
// or console socket), when the subhost has no state and nobody holds
// its lock. A subhost that never existed is left alone: nothing is made.
func (d Dir) Tidy() {
	if _, err := os.Lstat(d.path()); err != nil {
		return
	}
	if l, err := d.TryLock("tidy"); err == nil {
		l.Release() // without state, Release removes it all
	}
}

// Busy reports whether a process holds the subhost's lock now, and who,
// making nothing and taking no lock itself: for a subhost without state,
// whose lock a boot holds while its plugins start and validate, and for
// status and list, which must not make a stop's or a run's TryLock fail
// by holding the lock for a moment. The kernel's table of file locks
// (/proc/locks) says whether the lock file's inode is locked.
func (d Dir) Busy() (Holder, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(d.path(), "lock"), &st); err != nil {
		return Holder{}, false
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil || !flocked(string(locks), st.Dev, st.Ino) {
		return Holder{}, false
	}
	h, _ := d.Holder()
	return h, true
}

// flocked reports whether the /proc/locks table has a flock(2) lock on
// the inode ino of device dev ("MAJ:MIN:INO", the device in hex).
func flocked(table string, dev, ino uint64) bool {
	// Linux's dev_t: the major number in bits 8-19 and 32-43, the
	// minor in bits 0-7 and 20-31.
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	id := fmt.Sprintf("%02x:%02x:%d", major, minor, ino)
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		// "1: FLOCK  ADVISORY  WRITE 21296 fe:00:9978769 0 EOF"; a
		// lock someone waits for has "->" before its fields.
		if len(f) >= 6 && f[1] == "FLOCK" && f[5] == id {
			return true
		}
	}
	return false
}

// BusyError is TryLock's error for a lock that h holds.
func (d Dir) BusyError(h Holder) error {
	return fmt.Errorf("subhost %q is %w: %s holds its lock", d.Name, ErrBusy, h)
}

// Suspend gives the lock up for a while, without forgetting the subhost:
// a supervisor does so while it only waits for its guest, so that other
// operations (`subhost stage`, `subhost stop`) can work on the live
// subhost. Resume takes it back.
func (l *Lock) Suspend() {
	if !l.suspended {
		l.lock.Unlock()
		l.suspended = true
	}
}

// Resume takes a suspended lock back, waiting up to wait for whoever holds
// it meanwhile. The caller must reload the state: the other operation may
// have changed it.
func (l *Lock) Resume(ctx context.Context, wait time.Duration) error {
	if !l.suspended {
		return nil
	}
	deadline := time.Now().Add(wait)
	for {
		nl, err := l.dir.TryLock(l.operation)
		if err == nil {
			l.lock, l.suspended = nl.lock, false
			return nil
		}
		if !errors.Is(err, ErrBusy) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// makeDir makes the subhost's directory. One that another process made
// and removed meanwhile (a release racing this) is not an error: the
// lock file's open that follows tells.
func (d Dir) makeDir() error {
	if err := os.MkdirAll(d.path(), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// Release drops the lock. When the subhost has no state left (stopped, or
// an operation refused before it changed anything) its directory is
// removed too, so a stopped subhost leaves nothing under /run/subhost.
func (l *Lock) Release() {
	if l.suspended {
		return // someone else may hold it now: touch nothing
	}
	if _, err := os.Stat(l.dir.statePath()); errors.Is(err, os.ErrNotExist) {
		os.Remove(l.dir.StopRequestPath()) // a stop request nobody took
		// A supervisor that was killed leaves its console socket, and
		// one killed in the middle of a save its temporary file (no one
		// saves without the lock, which this process holds).
		os.Remove(filepath.Join(l.dir.path(), "console.sock"))
		if tmps, err := filepath.Glob(filepath.Join(l.dir.path(), ".state.json.tmp-*")); err == nil {
			for _, t := range tmps {
				os.Remove(t)
			}
		}
		os.Remove(l.lock.Path())
		os.Remove(l.dir.path())
	} else {
		os.WriteFile(l.lock.Path(), nil, 0o600)
	}
	l.lock.Unlock()
	l.lock.Close()
}
