// Package guestexit is the contract between subhost-init (the guest's
// PID 1) and the runner that waits for it: how the end of a guest's PID 1
// tells a power off from a reboot from a crash.
//
// subhost-init ends a guest with reboot(2). Inside a PID namespace the
// kernel then kills the namespace's PID 1 with SIGINT (power off, halt)
// or SIGHUP (restart). When reboot(2) is refused (no CAP_SYS_BOOT),
// subhost-init exits with ExitPowerOff or ExitReboot instead. Anything
// else is a crash.
package guestexit
