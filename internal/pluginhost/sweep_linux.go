package pluginhost

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// staleAfter is how old a plugin socket must be before a sweep may take
// it: a plugin starting now has bound its socket and not yet listened on
// it for a few microseconds, and such a socket looks like a dead one.
const staleAfter = time.Minute

// SweepSockets removes from dir the sockets of plugins that are gone.
// A plugin's socket is removed by the runner that kills it, or by the
// plugin when it is shut down; one is left behind when its runner is
// itself killed (SIGKILL, a crash), which kills its plugins
// (Pdeathsig). The directory is shared by every runner on the host, so a
// socket is taken only when all of these hold: its name is a plugin's
// (plugin<PID>-<hex>, sdk's naming), it is a socket, it is older than
// staleAfter, the PID in its name is gone, and nothing answers on it
// (which also spares a live plugin whose PID belongs to another PID
// namespace). It returns how many it removed.
func SweepSockets(dir string, now time.Time) int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	removed := 0
	for _, e := range entries {
		pid, ok := socketPID(e.Name())
		if !ok || e.Type()&os.ModeSocket == 0 {
			continue
		}
		// The live plugin's first, one system call (with a hundred
		// subhosts booting, hundreds of sockets are a live plugin's).
		if !errors.Is(unix.Kill(pid, 0), unix.ESRCH) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if info, err := e.Info(); err != nil || now.Sub(info.ModTime()) < staleAfter || answers(path) {
			continue
		}
		if os.Remove(path) == nil {
			removed++
		}
	}
	return removed
}

// socketPID is the PID in a plugin socket's name, plugin<PID>-<8 hex>.
func socketPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "plugin")
	if !ok {
		return 0, false
	}
	num, hex, ok := strings.Cut(rest, "-")
	if !ok || len(hex) != 8 {
		return 0, false
	}
	if _, err := strconv.ParseUint(hex, 16, 32); err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(num)
	return pid, err == nil && pid > 0
}

// answers reports whether something listens on the unix socket at path:
// anything but a refused connection counts as yes, to keep the socket.
func answers(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return true
	}
	return !errors.Is(err, syscall.ECONNREFUSED)
}
