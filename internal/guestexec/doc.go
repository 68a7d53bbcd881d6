// Package guestexec runs a command inside a running guest for `subhost
// enter`: the guest's PID 1 (subhost-init) forks and executes it, so that
// no host executable is ever a process of the guest.
//
// Why this way: the obvious alternative, joining the guest's namespaces
// from the host (util-linux nsenter, or a re-executed helper), leaves a
// host binary running inside the guest's PID namespace until it executes
// the command. The guest's root keeps CAP_SYS_PTRACE there, so a guest
// process watching /proc can open that process's /proc/PID/exe, and the
// host binary behind it, for writing (runc's CVE-2019-5736); a dynamic
// binary also shows the host's libraries in /proc/PID/map_files. Making
// the helper non-dumpable does not stop a CAP_SYS_PTRACE holder, and a
// sealed memfd copy still maps the host's libc. A child of subhost-init
// is a guest process from fork on: its /proc/PID/exe is the guest's
// /sbin/subhost-init, then the guest's own command, and it inherits PID
// 1's namespaces, root, cgroups, dropped capabilities and seccomp guard.
//
// The protocol: subhost-init listens on an abstract unix socket
// (SocketName, SOCK_SEQPACKET) in the guest's network namespace, which
// only processes in that namespace can reach, and accepts only peers that
// are root and outside the guest's PID namespace (the host: SO_PEERCRED
// shows them as PID 0), so that no guest user can make PID 1 run
// anything. The client sends one Request with the command's descriptors
// (SCM_RIGHTS): a pty slave of the guest's own devpts, or three pipes;
// nothing else crosses. The request also carries credentials
// (SCM_CREDENTIALS) naming the uid that is the guest's root, which only
// the host's root may name: that is what tells it, in an unprivileged
// guest, from a host process that dropped root (see hostRoot). The server answers with an Event when the
// command has started (or could not), then one when it ended. The client
// may send signals meanwhile; when it hangs up, the command's process
// group gets SIGHUP, as a terminal's would.
package guestexec
