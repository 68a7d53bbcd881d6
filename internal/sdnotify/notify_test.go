package sdnotify

import (
	"net"
	"path/filepath"
	"testing"
)

func TestNotifySendsOneDatagram(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv(SocketEnv, sock)
	if sent, err := Notify("READY=1", "STATUS=up"); !sent || err != nil {
		t.Fatalf("Notify: %v %v", sent, err)
	}
	buf := make([]byte, 256)
	n, err := l.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1\nSTATUS=up\n" {
		t.Errorf("datagram %q %v", buf[:n], err)
	}
}

func TestNotifyWithoutSocket(t *testing.T) {
	t.Setenv(SocketEnv, "")
	if sent, err := Notify("READY=1"); sent || err != nil {
		t.Errorf("Notify without a socket: %v %v, want nothing done", sent, err)
	}
	t.Setenv(SocketEnv, "relative")
	if _, err := Notify("READY=1"); err == nil {
		t.Errorf("a relative socket path was accepted")
	}
}
