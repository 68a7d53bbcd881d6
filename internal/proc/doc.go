// Package proc identifies processes safely: a PID is reused, so a process
// is named by its PID and start time, and signalled through a pidfd opened
// and then checked against that start time, never by a bare PID.
package proc
