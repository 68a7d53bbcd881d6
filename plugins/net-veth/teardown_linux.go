package main

import "golang.org/x/sys/unix"

// Waiting for the kernel to take a veth pair away with its namespace
// pays when a stop is alone: the kernel's worker for it needs 3-4 ms.
// When many subhosts stop at once, that one worker falls behind (a busy
// host starves it like any other thread) and every stop waiting for it
// waits long: 100 subhosts stopping at once took 9.8-14.1 s when each
// waited for it (up to 50 ms, 100 ms or 5 s), 7.4-10.4 s when each deleted
// its pairs itself, which the stops do in parallel. So a Down waits for
// the kernel only while no other is under way: it holds an abstract unix
// socket's name meanwhile (nothing on disk; gone with the process). A
// Down that finds the name taken deletes at once and knocks, which tells
// the one waiting to delete at once too. Anyone on the host may take the
// name or knock: that only makes Downs delete as they did before.

// teardownSocket is the name, in the network namespace of the calling
// thread: the plugin's own, the host's (the one Downs of one host share).
const teardownSocket = "@subhost-veth-teardown"

// teardownClaim is the hold on teardownSocket of the Down that waits.
type teardownClaim struct{ fd int }

// claimTeardown takes teardownSocket, or, when another Down holds it,
// knocks on it and returns nil.
func claimTeardown() *teardownClaim {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: teardownSocket}); err != nil {
		if err == unix.EADDRINUSE {
			unix.Connect(fd, &unix.SockaddrUnix{Name: teardownSocket})
		}
		unix.Close(fd)
		return nil
	}
	if err := unix.Listen(fd, 64); err != nil {
		unix.Close(fd)
		return nil
	}
	return &teardownClaim{fd: fd}
}

// knocked reports whether another Down has started since the claim.
func (c *teardownClaim) knocked() bool {
	conn, _, err := unix.Accept4(c.fd, unix.SOCK_CLOEXEC)
	if err != nil {
		return false
	}
	unix.Close(conn)
	return true
}

// release frees the name.
func (c *teardownClaim) release() { unix.Close(c.fd) }
