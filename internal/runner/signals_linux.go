package runner

import "golang.org/x/sys/unix"

const (
	sigTerm = unix.SIGTERM
	sigKill = unix.SIGKILL
	sigPwr  = unix.SIGPWR
)
