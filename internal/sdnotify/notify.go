// Package sdnotify tells a service manager about a service's state over
// $NOTIFY_SOCKET (the sd_notify protocol: one datagram of NAME=value
// lines). Written here rather than imported: it is one datagram, and
// systemd's Go binding would bring its dbus code along.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// SocketEnv names the socket; unset when no service manager listens.
const SocketEnv = "NOTIFY_SOCKET"

// Notify sends state lines ("READY=1", "STATUS=...") to the socket named
// by $NOTIFY_SOCKET. Without one it does nothing and reports false.
func Notify(lines ...string) (bool, error) {
	path := os.Getenv(SocketEnv)
	if path == "" {
		return false, nil
	}
	// A leading '@' names a socket in the abstract namespace.
	if path[0] == '@' {
		path = "\x00" + path[1:]
	} else if path[0] != '/' {
		return false, fmt.Errorf("%s=%q: not an absolute path or abstract socket", SocketEnv, path)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("notify the service manager: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		return false, fmt.Errorf("notify the service manager: %w", err)
	}
	return true, nil
}
