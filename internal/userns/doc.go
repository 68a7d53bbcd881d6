// Package userns makes an unprivileged subhost's user namespace and the
// network namespace it owns, and pins both to files.
//
// The two are made together, in one clone of a holder process
// (CLONE_NEWUSER|CLONE_NEWNET with the uid and gid maps written by its
// privileged parent), because a Go process cannot join a user namespace
// afterwards: setns(CLONE_NEWUSER) refuses a multithreaded caller, and
// every Go process is one. The network namespace must be the user
// namespace's from birth, so that the guest's root holds CAP_NET_ADMIN
// over its own eth0; net-veth then adopts it. The holder only waits for
// its stdin to close while its parent bind-mounts /proc/PID/ns/user and
// /proc/PID/ns/net; it runs /proc/self/exe, so every binary that imports
// this package answers to it (see init).
//
// How later processes get in is the init stage's and `enter`'s business
// (they go through util-linux nsenter, a C program, single-threaded).
package userns
