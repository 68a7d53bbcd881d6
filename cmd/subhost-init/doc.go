// Command subhost-init is the PID 1 that the init stage injects into a
// guest root at /sbin/subhost-init and starts in the guest's new PID,
// mount, UTS and IPC namespaces, after pivot_root, with the console pty
// as its standard input, output and error.
//
//	subhost-init [--mode sysv|shell] [--shell PATH] [--shutdown-timeout D]
//
// Mode sysv (pipeline pretend-boot) boots the guest's own sysvinit
// scripts: it makes the /run/initctl FIFO, runs /etc/init.d/rcS and then
// /etc/init.d/rc 2, reaps every orphan, and waits for a shutdown request:
// a write to /run/initctl (runlevel 0 or anything unparsable: power off;
// runlevel 6: reboot), SIGPWR, SIGUSR1, SIGUSR2, SIGRTMIN+3, SIGRTMIN+4
// (power off), SIGINT, SIGTERM, SIGRTMIN+5 (reboot). The first request
// wins. Shutdown runs /etc/init.d/rc 0 (rc 6 to reboot, as sysvinit's
// inittab does), sends SIGTERM to every process, SIGKILL after a grace
// period, syncs and calls reboot(2), all within --shutdown-timeout (the
// host kills the guest when its own stop timeout is up): rc 0 gets that
// time less two graces (a sixth of it each, at most 5 s) and a margin. The
// runner tells the outcome from PID 1's wait status (internal/guestexit).
//
// Mode shell (pipeline control) runs an interactive shell as the
// session on the console; when it ends (or on any shutdown request) every
// guest process is killed and subhost-init exits 0: the subhost is then
// hibernating.
//
// It is a small static binary on purpose: no cgo, no gRPC, nothing but
// the standard library and golang.org/x/sys/unix, so that it runs in any
// guest root.
package main
