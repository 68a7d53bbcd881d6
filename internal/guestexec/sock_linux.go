package guestexec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// send writes one message with files attached (SCM_RIGHTS) and, unless
// nil, the credentials cred (SCM_CREDENTIALS).
func send(fd int, v any, files []*os.File, cred *unix.Ucred) error {
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
	for {
		err = unix.Sendmsg(fd, b, oob, nil, unix.MSG_NOSIGNAL)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// recv reads one message into v, with at most maxFiles descriptors
// attached (more, or a truncated message, is an error, and every
// descriptor received is closed), and the sender's credentials when the
// socket passes them (SO_PASSCRED). io.EOF: the peer hung up.
func recv(fd int, v any, maxFiles int) ([]*os.File, *unix.Ucred, error) {
	buf := make([]byte, maxMessage+1)
	oob := make([]byte, unix.CmsgSpace(4*max(maxFiles, 1))+unix.CmsgSpace(unix.SizeofUcred))
	var n, oobn, flags int
	var err error
	for {
		n, oobn, flags, _, err = unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
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
