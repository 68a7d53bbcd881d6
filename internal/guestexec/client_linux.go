package guestexec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoServer: the guest's PID 1 does not listen (an init older than
// this subhost, or not subhost-init).
var ErrNoServer = errors.New("the guest's init does not accept commands (is it an older subhost-init? reboot the guest)")

// Client is a connection to a guest's PID 1.
type Client struct {
	fd int
	// guestRoot is the uid, in this process's user namespace, that is
	// the guest's root: each request is sent with it as its credentials.
	guestRoot uint32
}

// DialUntil is Dial for a PID 1 that may not listen yet: it tries again,
// at growing intervals up to 50 ms, while Dial finds no server and until
// has not passed. (subhost-init listens a few milliseconds after its
// start, and `run --detach` reports a guest running once its PID 1 is
// executed: an enter right after it could otherwise come too soon.)
func DialUntil(netns int, guestRoot uint32, until time.Time) (*Client, error) {
	wait := 2 * time.Millisecond
	for {
		c, err := Dial(netns, guestRoot)
		if err != ErrNoServer || !time.Now().Add(wait).Before(until) {
			return c, err
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// Dial connects to PID 1 of the guest whose network namespace netns (an
// open descriptor: a pidfd of a guest process, or its /proc/PID/ns/net)
// is; guestRoot is the uid, in the caller's user namespace, that is the
// guest's root (GuestRoot). Only the socket is made in that namespace,
// from a thread that is then thrown away; the caller stays where it was.
func Dial(netns int, guestRoot uint32) (*Client, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Setns(netns, unix.CLONE_NEWNET); err != nil {
			done <- result{-1, fmt.Errorf("join the guest's network namespace: %w", err)}
			return
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			done <- result{-1, err}
			return
		}
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: SocketName})
		if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) {
			unix.Close(fd)
			done <- result{-1, ErrNoServer}
			return
		}
		if err != nil {
			unix.Close(fd)
			done <- result{-1, fmt.Errorf("connect to the guest's init: %w", err)}
			return
		}
		done <- result{fd, nil}
	}()
	r := <-done
	if r.err != nil {
		return nil, r.err
	}
	return &Client{fd: r.fd, guestRoot: guestRoot}, nil
}

// Start sends the request with its descriptors (req.Files() of them) and
// waits until the command runs (its PID in the guest) or could not be
// started. The caller may close its copies of files once Start returns.
func (c *Client) Start(req Request, files []*os.File) (int, error) {
	if len(files) != req.Files() {
		return 0, fmt.Errorf("%d descriptors for the command, want %d", len(files), req.Files())
	}
	if err := req.check(); err != nil {
		return 0, err
	}
	// The credentials are the proof that this is the host's root
	// (guestexec's hostRoot): naming a uid not its own takes CAP_SETUID.
	cred := &unix.Ucred{Pid: int32(os.Getpid()), Uid: c.guestRoot, Gid: uint32(os.Getgid())}
	sendErr := send(sock{fd: c.fd}, clientMsg{Request: &req}, files, cred)
	// A refusal may come before the request is sent: the server's
	// answer is still there to read.
	ev, err := c.next()
	if sendErr != nil && (err != nil || ev.Error == "") {
		return 0, fmt.Errorf("send the request to the guest's init: %w", sendErr)
	}
	if err != nil {
		return 0, err
	}
	if ev.Error != "" {
		return 0, fmt.Errorf("the guest's init: %s", ev.Error)
	}
	if !ev.Started {
		return 0, errors.New("the guest's init answered out of turn")
	}
	return ev.PID, nil
}

// Signal sends sig to the command's process group.
func (c *Client) Signal(sig syscall.Signal) error {
	return send(sock{fd: c.fd}, clientMsg{Signal: int(sig)}, nil, nil)
}

// Wait waits for the command to end.
func (c *Client) Wait() (Event, error) {
	ev, err := c.next()
	if err != nil {
		return Event{}, err
	}
	if !ev.Exited {
		return Event{}, errors.New("the guest's init answered out of turn")
	}
	return ev, nil
}

func (c *Client) next() (Event, error) {
	var ev Event
	files, _, err := recv(sock{fd: c.fd}, &ev, 0)
	if errors.Is(err, unix.ECONNRESET) {
		// A server that hung up with our request unread (a refusal)
		// resets the connection, and the kernel reports that first,
		// once, before the answer it had sent: read that.
		closeAll(files)
		files, _, err = recv(sock{fd: c.fd}, &ev, 0)
	}
	closeAll(files)
	if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
		return Event{}, errors.New("the guest's init went away (the guest is shutting down?)")
	}
	if err != nil {
		return Event{}, fmt.Errorf("read from the guest's init: %w", err)
	}
	return ev, nil
}

// Close hangs up: a command still running gets SIGHUP.
func (c *Client) Close() error { return unix.Close(c.fd) }

// GuestRoot is the uid, in the caller's user namespace, that the user
// namespace of process pid maps to its root: 0 for a privileged guest's
// process, the base of its range for an unprivileged one's.
func GuestRoot(pid int) (uint32, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		return 0, fmt.Errorf("the guest's uid map: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var inside, outside, count uint32
		if n, _ := fmt.Sscan(line, &inside, &outside, &count); n == 3 && inside == 0 && count > 0 {
			return outside, nil
		}
	}
	return 0, fmt.Errorf("the guest's uid map has no root: %q", b)
}
