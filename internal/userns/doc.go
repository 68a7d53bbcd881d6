// Package userns makes an unprivileged subhost's user namespace and the
// network namespace it owns, and pins both to files.
//
// The two are made together, in one clone of a holder process
// (CLONE_NEWUSER|CLONE_NEWNET with the uid and gid maps written by its
// privileged parent), because a Go process cannot join a user namespace
// afterwards: setns(CLONE_NEWUSER) refuses a multithreaded caller, and
// every Go process is one. The network namespace must be the user
// namespace's from birth, so that the guest's root holds CAP_NET_ADMIN
// over its own eth0; net-veth then adopts it. The holder is traced and
// stops at its exec, before running anything, while its parent
// bind-mounts /proc/PID/ns/user and /proc/PID/ns/net; then it is killed.
//
// How later processes get in is the init stage's and `enter`'s business
// (they go through util-linux nsenter, a C program, single-threaded).
package userns
