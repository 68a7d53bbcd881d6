package guestexec

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// hostPeer in the host's user namespace (the tests' own): only root
// outside the PID namespace; an overflow uid is a host nobody here.
func TestHostPeerOutsideAUserns(t *testing.T) {
	if inUserns() {
		t.Skip("the test runs in a user namespace")
	}
	for _, c := range []struct {
		cred unix.Ucred
		ok   bool
	}{
		{unix.Ucred{Pid: 0, Uid: 0}, true},
		{unix.Ucred{Pid: 0, Uid: 65534}, false},
		{unix.Ucred{Pid: 12, Uid: 0}, false},
		{unix.Ucred{Pid: 0, Uid: 1000}, false},
	} {
		err := hostPeer(&c.cred)
		if (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), "only the host's root")) {
			t.Errorf("%+v: %v, want ok=%v", c.cred, err, c.ok)
		}
	}
}

// hostRoot: a request's credentials must be root's, from outside the
// guest's PID namespace; none at all is refused too.
func TestHostRoot(t *testing.T) {
	for _, c := range []struct {
		cred *unix.Ucred
		want string // "" for accepted
	}{
		{&unix.Ucred{Pid: 0, Uid: 0}, ""},
		{&unix.Ucred{Pid: 0, Uid: 65534}, "credentials: pid 0 uid 65534"},
		{&unix.Ucred{Pid: 7, Uid: 0}, "credentials: pid 7 uid 0"},
		{nil, "without credentials"},
	} {
		err := hostRoot(c.cred)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.cred, err, c.want)
		}
	}
}
