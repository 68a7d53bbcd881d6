package config

import (
	"errors"
	"io"
	"os"
	"syscall"

	"github.com/subhost/subhost/internal/trust"
	"github.com/subhost/subhost/sdk"
)

// MaxSize bounds a config file: a few variables, never megabytes.
const MaxSize = 1 << 20

// Load reads and parses a config file. It refuses a symlink (the file is
// opened with O_NOFOLLOW, never followed), anything but a regular file, and
// a file not owned by root or writable by group or others (see package
// trust). A missing file returns an error for which
// errors.Is(err, fs.ErrNotExist) holds: the caller decides whether the
// environment is enough.
func Load(path string) (*File, error) {
	// O_NONBLOCK: opening a FIFO must not hang; it is refused below.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		var errno syscall.Errno
		errors.As(err, &errno)
		switch {
		case errno == syscall.ENOENT:
			return nil, sdk.NotFoundf("config %s: %w", path, syscall.ENOENT)
		case errno == syscall.ELOOP && isSymlink(path):
			return nil, sdk.Invalidf("config %s is a symlink, which subhost does not follow: replace it with the file itself", path)
		case errno != 0:
			return nil, sdk.Invalidf("config %s: %w", path, errno)
		default:
			return nil, sdk.Invalidf("config %s: %w", path, err)
		}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, sdk.Internalf("config %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, sdk.Invalidf("config %s is not a regular file (%s)", path, fileType(fi.Mode()))
	}
	if err := trust.File(f, "config"); err != nil {
		return nil, err
	}
	src, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, sdk.Invalidf("config %s: %w", path, err)
	}
	if len(src) > MaxSize {
		return nil, sdk.Invalidf("config %s is larger than %d bytes", path, MaxSize)
	}
	return Parse(path, src)
}

func fileType(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	default:
		return m.Type().String()
	}
}

func isSymlink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}
