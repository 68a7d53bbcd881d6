package guestexec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// sock is a descriptor messages go over: a blocking one (the client's),
// or one in Go's poller (PID 1's, rc set), where waiting for a client
// parks a goroutine rather than holding an OS thread: PID 1 made the
// threads it may ever have at its start (a guest at its pids limit
// leaves it none to make), and each open enter session waits on its
// connection for as long as its command runs.
type sock struct {
	fd int
	rc syscall.RawConn // nil: fd blocks
}

// do runs fn on the descriptor: once on a blocking one; on a polled one,
// again each time it reports EAGAIN, once the descriptor is ready (for
// reading, or writing), within the file's deadline.
func (s sock) do(write bool, fn func(fd int) error) error {
	if s.rc == nil {
		return fn(s.fd)
	}
	var err error
	op := s.rc.Read
	if write {
		op = s.rc.Write
	}
	if cerr := op(func(fd uintptr) bool {
		err = fn(int(fd))
		return !errors.Is(err, unix.EAGAIN)
	}); cerr != nil {
		return cerr
	}
	return err
}

// send writes one message with files attached (SCM_RIGHTS) and, unless
// nil, the credentials cred (SCM_CREDENTIALS).
func send(s sock, v any, files []*os.File, cred *unix.Ucred) error {
	b, err := marshal(v)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if cred != nil {
		oob = append(oob, unix.UnixCredentials(cred)...)
	}
	return s.do(true, func(fd int) error {
		for {
			err := unix.Sendmsg(fd, b, oob, nil, unix.MSG_NOSIGNAL)
			if !errors.Is(err, unix.EINTR) {
				return err
			}
		}
	})
}

// recv reads one message into v, with at most maxFiles descriptors
// attached (more, or a truncated message, is an error, and every
// descriptor received is closed), and the sender's credentials when the
// socket passes them (SO_PASSCRED). io.EOF: the peer hung up.
func recv(s sock, v any, maxFiles int) ([]*os.File, *unix.Ucred, error) {
	buf := make([]byte, maxMessage+1)
	oob := make([]byte, unix.CmsgSpace(4*max(maxFiles, 1))+unix.CmsgSpace(unix.SizeofUcred))
	var n, oobn, flags int
	err := s.do(false, func(fd int) error {
		for {
			var err error
			n, oobn, flags, _, err = unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
			if !errors.Is(err, unix.EINTR) {
				return err
			}
		}
	})
	if err != nil {
		return nil, nil, err
	}
	var files []*os.File
	var cred *unix.Ucred
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, nil, fmt.Errorf("control message: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_CREDENTIALS {
				if c, err := unix.ParseUnixCredentials(&m); err == nil {
					cred = c
				}
				continue
			}
			fds, err := unix.ParseUnixRights(&m)
			if err != nil {
				continue
			}
			for _, fd := range fds {
				files = append(files, os.NewFile(uintptr(fd), "received"))
			}
		}
	}
	switch {
	case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || n > maxMessage:
		closeAll(files)
		return nil, nil, errors.New("message too long, or too many descriptors")
	case len(files) > maxFiles:
		closeAll(files)
		return nil, nil, fmt.Errorf("%d descriptors, want at most %d", len(files), maxFiles)
	case n == 0 && len(files) == 0:
		return nil, nil, io.EOF
	}
	if err := json.Unmarshal(buf[:n], v); err != nil {
		closeAll(files)
		return nil, nil, fmt.Errorf("decode message: %w", err)
	}
	return files, cred, nil
}
