package sdk

import "slices"

// reservedDevNames are the names a guest's /dev keeps for itself: the
// init stage's standard nodes and directories, and what guest programs
// create there (/dev/log, /dev/kmsg, /dev/initctl, /dev/core). A disk in
// the boot record must not take one.
var reservedDevNames = []string{
	"null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
	"pts", "shm", "mqueue", "fd", "stdin", "stdout", "stderr", "net",
	"log", "kmsg", "initctl", "core",
}

// IsReservedDevName reports whether a /dev name is one the guest keeps for
// itself, so that no Device of the boot record may use it.
func IsReservedDevName(name string) bool { return slices.Contains(reservedDevNames, name) }
