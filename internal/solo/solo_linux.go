// Package solo lets one process on a host act alone while others of its
// kind are not under way, and hear when one starts: it holds an abstract
// unix socket's name (nothing on disk; gone with the process), which the
// next one finds taken and knocks on.
//
// It is for work that pays only when one instance runs (a boot keeping
// the cgroup semaphore warm, a stop waiting for the kernel's namespace
// worker): anyone on the host may take the name or knock, and that only
// makes the others do without the extra.
package solo

import "golang.org/x/sys/unix"

// Claim is the hold on a name.
type Claim struct{ fd int }

// Take takes the abstract socket name (one starting with "@", in the
// calling thread's network namespace). When another holds it, Take knocks
// on it and returns nil; it also returns nil when it cannot make the
// socket.
func Take(name string) *Claim {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		if err == unix.EADDRINUSE {
			unix.Connect(fd, &unix.SockaddrUnix{Name: name})
		}
		unix.Close(fd)
		return nil
	}
	if err := unix.Listen(fd, 64); err != nil {
		unix.Close(fd)
		return nil
	}
	return &Claim{fd: fd}
}

// Knocked reports whether another Take of the name knocked: each knock is
// reported once.
func (c *Claim) Knocked() bool {
	conn, _, err := unix.Accept4(c.fd, unix.SOCK_CLOEXEC)
	if err != nil {
		return false
	}
	unix.Close(conn)
	return true
}

// Release frees the name.
func (c *Claim) Release() { unix.Close(c.fd) }
