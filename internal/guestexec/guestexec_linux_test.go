package guestexec

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk/stagetest"
)

// listenInNewNetns listens in a network namespace of the test's own (as
// PID 1 does in the guest's) and returns the listener and a descriptor of
// that namespace for Dial.
func listenInNewNetns(t *testing.T) (*Listener, int) {
	t.Helper()
	var l *Listener
	ns := newNetns(t, func() (err error) {
		l, err = Listen()
		return err
	})
	t.Cleanup(func() { l.Close() })
	return l, ns
}

// newNetns makes a network namespace of the test's own, runs inside in
// it (on the thread that entered it, which ends afterwards), and returns
// a descriptor of it, closed when the test ends.
func newNetns(t *testing.T, inside func() error) int {
	t.Helper()
	type result struct {
		ns  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- result{-1, err}
			return
		}
		ns, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- result{-1, err}
			return
		}
		if err := inside(); err != nil {
			unix.Close(ns)
			done <- result{-1, err}
			return
		}
		done <- result{ns, nil}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { unix.Close(r.ns) })
	return r.ns
}

// serveN runs handle on each of the next n connections to l, one after
// the other, in a goroutine that the test waits for when it ends. Its
// Accept must not outlive the test: called again after the listener's
// descriptor is closed, it would accept on whatever the next test opened
// under the same number (TestNoServer's listener, once, which a Dial then
// reached). The wait closes the listener first, which wakes an Accept
// that no connection will end (the listener is in Go's poller).
func serveN(t *testing.T, l *Listener, n int, handle func(*Conn)) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			c, err := l.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
}

func pipes(t *testing.T) (ours, theirs [3]*os.File) {
	t.Helper()
	for i := range 3 {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			ours[i], theirs[i] = w, r
		} else {
			ours[i], theirs[i] = r, w
		}
		t.Cleanup(func() { r.Close(); w.Close() })
	}
	return ours, theirs
}

// TestRoundTrip: the request and its three pipes reach the server, the
// command's output and the client's signal go through, the exit status
// comes back.
func TestRoundTrip(t *testing.T) {
	stagetest.RequireRoot(t)
	l, ns := listenInNewNetns(t)
	// The test is its own peer; the request's credentials are kept.
	sent := make(chan unix.Ucred, 1)
	l.allow = func(*unix.Ucred) error { return nil }
	l.allowRequest = func(c *unix.Ucred) error {
		if c != nil {
			sent <- *c
		}
		return nil
	}
	served := make(chan string, 1)
	serveN(t, l, 1, func(c *Conn) {
		if err := c.ReadRequest(); err != nil {
			served <- err.Error()
			return
		}
		defer c.Close()
		c.Send(Event{Started: true, PID: 42})
		in, _ := io.ReadAll(c.Files[0])
		c.Files[1].WriteString("out:" + strings.Join(c.Request.Argv, " "))
		c.Files[2].WriteString("err:" + string(in))
		closeAll(c.Files)
		var got syscall.Signal
		c.Signals(func(s syscall.Signal) {
			got = s
			c.Send(Event{Exited: true, Signal: int(s)})
		})
		served <- "signal " + got.String()
	})

	// As if the guest's root were host uid 100000: root may name it.
	c, err := Dial(ns, 100000)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ours, theirs := pipes(t)
	pid, err := c.Start(Request{Argv: []string{"echo", "hi"}, Env: []string{"A=b"}}, theirs[:])
	if err != nil || pid != 42 {
		t.Fatalf("Start: pid %d, %v", pid, err)
	}
	select {
	case cred := <-sent:
		if cred.Uid != 100000 || int(cred.Pid) != os.Getpid() {
			t.Errorf("the request came with credentials %+v, want uid 100000 and pid %d", cred, os.Getpid())
		}
	default:
		t.Error("the request came without credentials")
	}
	for _, f := range theirs {
		f.Close()
	}
	ours[0].WriteString("input")
	ours[0].Close()
	out, _ := io.ReadAll(ours[1])
	errOut, _ := io.ReadAll(ours[2])
	if string(out) != "out:echo hi" || string(errOut) != "err:input" {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
	if err := c.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	ev, err := c.Wait()
	if err != nil || ev.ExitCode() != 128+int(syscall.SIGUSR1) {
		t.Errorf("Wait: %+v %v", ev, err)
	}
	c.Close()
	if s := <-served; s != "signal user defined signal 1" {
		t.Errorf("server: %s", s)
	}
}

// TestRefusesGuestPeers: a peer inside PID 1's own PID namespace (here:
// any process the test can see) gets a refusal, and nothing runs.
func TestRefusesGuestPeers(t *testing.T) {
	stagetest.RequireRoot(t)
	l, ns := listenInNewNetns(t)
	accepted := make(chan *Conn, 1)
	serveN(t, l, 1, func(c *Conn) {
		if c.ReadRequest() == nil {
			accepted <- c
			return
		}
		c.Close()
	})
	c, err := Dial(ns, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, theirs := pipes(t)
	_, err = c.Start(Request{Argv: []string{"id"}}, theirs[:])
	if err == nil || !strings.Contains(err.Error(), "refused: only the host's root may enter") {
		t.Errorf("Start from a visible peer: %v, want refused", err)
	}
	select {
	case conn := <-accepted:
		t.Errorf("Accept returned a refused peer's request %+v", conn.Request)
	default:
	}
}

// TestRefusesSilentGuestPeersAtOnce: guest peers that connect and send
// nothing are refused at once by Accept, not after the request timeout:
// nothing of PID 1's (a thread blocked reading) waits on them.
func TestRefusesSilentGuestPeersAtOnce(t *testing.T) {
	stagetest.RequireRoot(t)
	l, ns := listenInNewNetns(t)
	serveN(t, l, 1, func(c *Conn) { c.Close() }) // no allowed peer comes
	var clients []*Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range 10 { // within the listen backlog
		c, err := Dial(ns, 0)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	for i, c := range clients {
		tv := unix.NsecToTimeval(time.Second.Nanoseconds())
		unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		ev, err := c.next()
		if err != nil || !strings.Contains(ev.Error, "refused: only the host's root may enter") {
			t.Fatalf("silent connection %d: %+v %v, want refused within a second", i, ev, err)
		}
	}
}

// TestBadRequests: requests PID 1 must not act on are answered with one
// clear error each.
func TestBadRequests(t *testing.T) {
	stagetest.RequireRoot(t)
	l, ns := listenInNewNetns(t)
	l.allow = func(*unix.Ucred) error { return nil }
	l.allowRequest = l.allow
	_, theirs := pipes(t)
	cases := []struct {
		name  string
		msg   clientMsg
		files []*os.File
		want  string
	}{
		{"tty with three descriptors", clientMsg{Request: &Request{Argv: []string{"sh"}, TTY: true}}, theirs[:], "came with 3 descriptors, want 1"},
		{"pipes with one descriptor", clientMsg{Request: &Request{Argv: []string{"sh"}}}, theirs[:1], "came with 1 descriptors, want 3"},
		{"no command", clientMsg{Request: &Request{}}, theirs[:], "no command"},
		{"bad environment", clientMsg{Request: &Request{Argv: []string{"sh"}, Env: []string{"NOEQUALS"}}}, theirs[:], `"NOEQUALS" is not NAME=value`},
		{"a signal first", clientMsg{Signal: 9}, nil, "the first message is not a request"},
	}
	serveN(t, l, len(cases), func(c *Conn) {
		if c.ReadRequest() == nil {
			c.Send(Event{Error: "accepted a bad request"})
		}
		c.Close()
	})
	for _, tc := range cases {
		c, err := Dial(ns, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := send(sock{fd: c.fd}, tc.msg, tc.files, nil); err != nil {
			t.Fatalf("%s: send: %v", tc.name, err)
		}
		ev, err := c.next()
		if err != nil || !strings.Contains(ev.Error, tc.want) {
			t.Errorf("%s: %+v %v, want an error saying %q", tc.name, ev, err, tc.want)
		}
		c.Close()
	}
}

// TestRequestCredentials: a peer let through at accept (in an
// unprivileged guest, every host uid the guest does not map looks like
// the host's root) still needs root's credentials from outside on its
// request: those the kernel attaches when the client sends none, and
// those Client sends, say who it is (here, a process the server sees).
func TestRequestCredentials(t *testing.T) {
	stagetest.RequireRoot(t)
	l, ns := listenInNewNetns(t)
	l.allow = func(*unix.Ucred) error { return nil }
	_, theirs := pipes(t)
	serveN(t, l, 2, func(c *Conn) {
		if c.ReadRequest() == nil {
			c.Send(Event{Error: "accepted a request"})
		}
		c.Close()
	})
	want := fmt.Sprintf("refused: only the host's root may enter (the request's credentials: pid %d uid 0)", os.Getpid())
	c, err := Dial(ns, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(sock{fd: c.fd}, clientMsg{Request: &Request{Argv: []string{"sh"}}}, theirs[:], nil); err != nil {
		t.Fatal(err)
	}
	if ev, err := c.next(); err != nil || ev.Error != want {
		t.Errorf("a request without credentials of its own: %+v %v, want %q", ev, err, want)
	}
	c.Close()
	c, err = Dial(ns, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Start(Request{Argv: []string{"sh"}}, theirs[:]); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Start from a process the server sees: %v, want %q", err, want)
	}
}

// TestNoServer: a guest whose PID 1 does not listen gets ErrNoServer.
func TestNoServer(t *testing.T) {
	stagetest.RequireRoot(t)
	ns := newNetns(t, func() error { return nil })
	if _, err := Dial(ns, 0); err != ErrNoServer {
		t.Errorf("Dial with nobody listening: %v, want ErrNoServer", err)
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/tool", nil, 0o755)
	os.WriteFile(dir+"/data", nil, 0o644)
	env := []string{"PATH=/nonexistent:" + dir}
	if p, err := LookPath("tool", env); err != nil || p != dir+"/tool" {
		t.Errorf("LookPath(tool): %q %v", p, err)
	}
	if _, err := LookPath("data", env); err == nil {
		t.Error("LookPath found a file that is not executable")
	}
	if p, err := LookPath("/bin/x", env); err != nil || p != "/bin/x" {
		t.Errorf("LookPath(/bin/x): %q %v", p, err)
	}
}

// TestDialUntilWaitsForALateListener: a PID 1 that starts listening only
// after the client's first attempts (as subhost-init does a few
// milliseconds after `run --detach` has reported the guest running) is
// reached; with no time left, a namespace nobody listens in gives
// ErrNoServer at once.
func TestDialUntilWaitsForALateListener(t *testing.T) {
	stagetest.RequireRoot(t)
	ns := newNetns(t, func() error { return nil })
	if _, err := DialUntil(ns, 0, time.Now()); err != ErrNoServer {
		t.Fatalf("DialUntil with no time left and nobody listening: %v, want ErrNoServer", err)
	}
	listening := make(chan *Listener, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		time.Sleep(30 * time.Millisecond)
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			t.Error(err)
			listening <- nil
			return
		}
		l, err := Listen()
		if err != nil {
			t.Error(err)
		}
		listening <- l
	}()
	c, err := DialUntil(ns, 0, time.Now().Add(10*time.Second))
	l := <-listening
	if l == nil {
		t.FailNow()
	}
	defer l.Close()
	if err != nil {
		t.Fatalf("DialUntil while the listener comes up: %v", err)
	}
	c.Close()
}
