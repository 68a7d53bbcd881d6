package console

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// rotLog is a console log capped at max bytes: when full it becomes
// path+".1" (replacing the previous one) and a new file starts.
type rotLog struct {
	path string
	max  int64
	f    *os.File
	size int64
}

func openLog(path string, max int64) (*rotLog, error) {
	if max <= 0 {
		return nil, fmt.Errorf("console log %q: size cap %d is not positive", path, max)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("console log directory: %w", err)
	}
	l := &rotLog{path: path, max: max}
	if err := l.open(0); err != nil {
		return nil, err
	}
	return l, nil
}

// open opens (creating) the log file for appending, refusing a symlink or
// anything but a regular file at path, and makes it 0600 whatever it was.
func (l *rotLog) open(extra int) error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|extra, 0o600)
	if err != nil {
		return fmt.Errorf("console log: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("console log %q is not a regular file", l.path)
	}
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, fi.Size()
	return nil
}

func (l *rotLog) write(p []byte) error {
	for len(p) > 0 {
		if l.size >= l.max {
			if err := l.rotate(); err != nil {
				return err
			}
		}
		n := min(int64(len(p)), l.max-l.size)
		w, err := l.f.Write(p[:n])
		l.size += int64(w)
		if err != nil {
			return fmt.Errorf("console log: %w", err)
		}
		p = p[n:]
	}
	return nil
}

func (l *rotLog) rotate() error {
	l.f.Close()
	l.f = nil
	// The current file may be gone: removed by hand, or renamed away by
	// logrotate with nocreate. There is nothing to keep then, and failing
	// here would turn the console log off until the next boot: a new
	// file starts instead.
	if err := os.Rename(l.path, l.path+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("console log rotate: %w", err)
	}
	return l.open(os.O_TRUNC)
}

func (l *rotLog) close() {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
