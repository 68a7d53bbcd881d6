package guestexec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/guestenv"
)

// Listener is PID 1's socket, in Go's poller (see sock).
type Listener struct {
	fd   int
	file *os.File
	rc   syscall.RawConn
	// allow judges a connecting peer (hostPeer) and allowRequest the
	// credentials its request came with (hostRoot), unless a test says
	// otherwise.
	allow, allowRequest func(*unix.Ucred) error
}

// Listen binds SocketName in the calling process's network namespace.
// PID 1 calls it before it starts anything, so no guest process can
// take the name first.
func Listen() (*Listener, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("enter socket: %w", err)
	}
	// The request's credentials (SCM_CREDENTIALS) are the client's proof
	// of who it is: see hostRoot. Accepted sockets inherit the option.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("enter socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: SocketName}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("enter socket: bind %s: %w", SocketName, err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("enter socket: listen: %w", err)
	}
	file, rc, err := polled(fd, "enter socket")
	if err != nil {
		return nil, err
	}
	return &Listener{fd: fd, file: file, rc: rc, allow: hostPeer, allowRequest: hostRoot}, nil
}

// polled hands the non-blocking descriptor fd to Go's poller, as a file
// that owns it, and returns its raw connection.
func polled(fd int, name string) (*os.File, syscall.RawConn, error) {
	file := os.NewFile(uintptr(fd), name)
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return file, rc, nil
}

// hostPeer accepts root outside the guest's PID namespace: SO_PEERCRED
// gives PID 0 for a process this namespace cannot see. Guest processes,
// root or not, are refused: they have no business asking PID 1 for
// anything.
//
// In an unprivileged guest (PID 1 in a user namespace of its own) the
// host's root is not mapped, so SO_PEERCRED shows it as the overflow uid
// (65534): such a peer is let through here, to prove who it is with its
// request (hostRoot). Every uid the guest does not map looks the same
// from inside, and a host process can join the guest's network namespace
// as root and then drop to any uid (`ip netns exec NAME tcpdump` does).
func hostPeer(c *unix.Ucred) error {
	if c.Pid == 0 && (c.Uid == 0 || (c.Uid == overflowUID() && inUserns())) {
		return nil
	}
	return fmt.Errorf("refused: only the host's root may enter (peer pid %d uid %d)", c.Pid, c.Uid)
}

// hostRoot judges the credentials a request came with (SCM_CREDENTIALS,
// as this process sees them): they must say uid 0 and a PID outside the
// guest's PID namespace. The kernel lets a sender name a uid other than
// its own only with CAP_SETUID in its user namespace, so in an
// unprivileged guest only the host's root can name the host uid mapped to
// the guest's root (Client does), and a host process that dropped root
// cannot; in a privileged guest the sender's uid is shown as it is. A
// request with no credentials at all (a client older than this init,
// which never sent them) is refused the same way.
func hostRoot(c *unix.Ucred) error {
	if c == nil {
		return errors.New("refused: only the host's root may enter (the request came without credentials: is subhost older than this guest's init?)")
	}
	if c.Pid == 0 && c.Uid == 0 {
		return nil
	}
	return fmt.Errorf("refused: only the host's root may enter (the request's credentials: pid %d uid %d)", c.Pid, c.Uid)
}

// inUserns reports whether this process is in a user namespace other
// than the host's, whose uid map is the identity on every id.
func inUserns() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

// overflowUID is the uid the kernel shows for one a user namespace does
// not map (kernel.overflowuid, 65534 unless changed).
func overflowUID() uint32 {
	b, err := os.ReadFile("/proc/sys/kernel/overflowuid")
	if err != nil {
		return 65534
	}
	var n uint32
	if _, err := fmt.Sscan(string(b), &n); err != nil {
		return 65534
	}
	return n
}

// Close stops listening.
func (l *Listener) Close() error { return l.file.Close() }

// Conn is one accepted connection, in Go's poller (see sock).
type Conn struct {
	fd                  int
	file                *os.File
	sock                sock
	allow, allowRequest func(*unix.Ucred) error
	// Request, once ReadRequest has returned nil.
	Request Request
	// Files are the command's descriptors: one terminal (Request.TTY)
	// or stdin, stdout, stderr. The caller closes them once the command
	// holds them.
	Files []*os.File
}

// requestTimeout bounds how long a client may take to send its request:
// a guest process that connects and says nothing must not hold anything.
const requestTimeout = 5 * time.Second

// Accept waits for the next connection of a peer allowed to enter. Read
// its request with ReadRequest, in a goroutine of its own: a slow client
// must not hold up the next one. Any other peer (a guest process) is
// refused here, at once and before anything of its is read: a goroutine
// blocked reading its silence would hold one of PID 1's threads, and a
// guest user with a few connections and a fork storm at PIDS_MAX, or with
// thousands of them, would leave PID 1's runtime none to make.
func (l *Listener) Accept() (*Conn, error) {
	for {
		var nfd int
		err := sock{fd: l.fd, rc: l.rc}.do(false, func(fd int) error {
			var err error
			nfd, _, err = unix.Accept4(fd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
			return err
		})
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("enter socket: accept: %w", err)
		}
		cred, err := unix.GetsockoptUcred(nfd, unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err == nil {
			err = l.allow(cred)
		}
		if err != nil {
			refuse(nfd, err)
			continue
		}
		file, rc, err := polled(nfd, "enter connection")
		if err != nil {
			return nil, err
		}
		return &Conn{fd: nfd, file: file, sock: sock{fd: nfd, rc: rc}, allow: l.allow, allowRequest: l.allowRequest}, nil
	}
}

// refuse tells a peer why without waiting for it, and hangs up. What it
// sent already is read and dropped first, so that the hang-up is not a
// reset; the client reads the answer after a reset too, and when its
// request could not be sent.
func refuse(fd int, why error) {
	if b, err := marshal(Event{Error: why.Error()}); err == nil {
		_ = unix.Sendmsg(fd, b, nil, nil, unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT)
	}
	var drop [64]byte
	for range 4 {
		// MSG_TRUNC: a record longer than drop goes whole; descriptors
		// it carried are closed by the kernel with it (no control buffer).
		if n, _, err := unix.Recvfrom(fd, drop[:], unix.MSG_DONTWAIT|unix.MSG_TRUNC); err != nil || n == 0 {
			break
		}
	}
	unix.Close(fd)
}

// ReadRequest reads the client's request and checks it and the client.
// A refused or malformed request is answered with an Error event and
// returned as an error; the caller then closes c.
func (c *Conn) ReadRequest() error {
	err := c.readRequest()
	if err != nil {
		_ = c.Send(Event{Error: err.Error()})
	}
	return err
}

func (c *Conn) readRequest() error {
	if err := c.file.SetReadDeadline(time.Now().Add(requestTimeout)); err != nil {
		return err
	}
	var m clientMsg
	files, cred, err := recv(c.sock, &m, 3)
	if err != nil {
		return fmt.Errorf("read the request: %w", err)
	}
	err = c.check(&m, cred, len(files))
	if err != nil {
		closeAll(files)
		return err
	}
	c.Request, c.Files = *m.Request, files
	return c.file.SetReadDeadline(time.Time{}) // signals may come at any time
}

// check judges the client and its request m, which came with files
// descriptors and the credentials sent.
func (c *Conn) check(m *clientMsg, sent *unix.Ucred, files int) error {
	cred, err := unix.GetsockoptUcred(c.fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	if err := c.allow(cred); err != nil {
		return err
	}
	if err := c.allowRequest(sent); err != nil {
		return err
	}
	switch {
	case m.Request == nil:
		return errors.New("the first message is not a request")
	case files != m.Request.Files():
		return fmt.Errorf("the request came with %d descriptors, want %d", files, m.Request.Files())
	}
	return m.Request.check()
}

// Send sends ev to the client; a client that went away is not an error
// worth more than the return value.
func (c *Conn) Send(ev Event) error { return send(c.sock, ev, nil, nil) }

// Signals calls fn with each signal the client sends, until it hangs up
// (then it returns nil) or sends something else.
func (c *Conn) Signals(fn func(syscall.Signal)) error {
	for {
		var m clientMsg
		files, _, err := recv(c.sock, &m, 0)
		closeAll(files)
		if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
			return nil
		}
		if err != nil {
			return err
		}
		if m.Signal <= 0 || m.Signal > 64 {
			return fmt.Errorf("unexpected message from the client")
		}
		fn(syscall.Signal(m.Signal))
	}
}

// Close closes the connection (not Files). The shutdown wakes a
// Signals blocked on it in another goroutine.
func (c *Conn) Close() error {
	_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	return c.file.Close()
}

// LookPath finds a command as execvp would with env's PATH (inside the
// guest: PID 1 calls it).
func LookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := guestenv.Path
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found", name)
}
