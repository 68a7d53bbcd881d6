package console

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// control runs fn with f's file descriptor without (*os.File).Fd's side
// effect of switching f to blocking mode.
func control(f *os.File, fn func(fd int)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { fn(int(fd)) })
}

// fileFD returns f's descriptor number, valid while f stays open.
func fileFD(f *os.File) (int, error) {
	fd := -1
	if err := control(f, func(n int) { fd = n }); err != nil {
		return -1, fmt.Errorf("file descriptor of %q: %w", f.Name(), err)
	}
	return fd, nil
}

// errWoken is returned by the waker-aware I/O below once the waker fired.
var errWoken = errors.New("console: relay stopped")

// A waker interrupts readFD and writeFD. The caller's stdin and stdout are
// usually blocking descriptors outside Go's poller, and making them
// non-blocking would change the open file shared with the user's shell, so
// they are waited on with poll(2) beside an eventfd instead.
type waker struct{ fd int }

func newWaker() (*waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &waker{fd: fd}, nil
}

// wake makes every current and future wait on w return errWoken.
func (w *waker) wake() {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	_, _ = unix.Write(w.fd, b[:])
}

func (w *waker) close() { unix.Close(w.fd) }

// wait blocks until fd has one of events or w fires.
func (w *waker) wait(fd int, events int16) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}, {Fd: int32(w.fd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if fds[1].Revents != 0 {
			return errWoken
		}
		if fds[0].Revents&unix.POLLNVAL != 0 {
			return fmt.Errorf("poll: %w", unix.EBADF)
		}
		if fds[0].Revents != 0 {
			return nil
		}
	}
}

// readFD reads from fd, blocking or not, until data, EOF, an error or w.
func readFD(fd int, p []byte, w *waker) (int, error) {
	for {
		if err := w.wait(fd, unix.POLLIN); err != nil {
			return 0, err
		}
		n, err := unix.Read(fd, p)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// writeFD writes all of p to fd unless w fires first. It writes at most a
// page per wake-up: POLLOUT on a pipe promises that much room, so a
// blocking descriptor does not block the writer past the waker.
func writeFD(fd int, p []byte, w *waker) error {
	const chunk = 4096
	for len(p) > 0 {
		if err := w.wait(fd, unix.POLLOUT); err != nil {
			return err
		}
		n, err := unix.Write(fd, p[:min(len(p), chunk)])
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}
