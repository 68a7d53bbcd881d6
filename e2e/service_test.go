package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifyListener is a service manager's end of $NOTIFY_SOCKET: every
// datagram received, in order.
type notifyListener struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	l := &notifyListener{path: path, msgs: make(chan string, 32)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			l.msgs <- string(buf[:n])
		}
	}()
	return l
}

// waitFor returns the first datagram holding want.
func (l *notifyListener) waitFor(t *testing.T, want string, d time.Duration) string {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m := <-l.msgs:
			if strings.Contains(m, want) {
				return m
			}
		case <-timeout:
			t.Fatalf("no %s on NOTIFY_SOCKET within %s", want, d)
			return ""
		}
	}
}

// startSupervised starts `run --supervise` for g with NOTIFY_SOCKET set.
func (g *guest) startSupervised(l *notifyListener) *bg {
	g.e.t.Helper()
	args := append([]string{"run", "--supervise", "--pipeline", "pretend-boot", "--home", g.home}, g.name)
	cmd := g.e.command(context.Background(), g.ns, args...)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+l.path)
	return g.e.startCmd(cmd)
}

// TestRunSupervise: READY=1 (with MAINPID and STATUS) arrives once the
// guest's PID 1 runs; SIGTERM powers the guest off in order (rc 0 runs),
// brings everything down, and the exit status is 0.
func TestRunSupervise(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("svc", nil)
	l := listenNotify(t)
	sup := g.startSupervised(l)
	msg := l.waitFor(t, "READY=1", 30*time.Second)
	r := e.status(g.name)
	if r.State != "running" || r.PID == 0 || gone(r.PID) {
		t.Fatalf("at READY=1 the subhost is %s with guest pid %d", r.State, r.PID)
	}
	if !strings.Contains(msg, "MAINPID="+strconv.Itoa(sup.Cmd.Process.Pid)) || !strings.Contains(msg, "STATUS=") {
		t.Errorf("readiness %q lacks MAINPID=%d or STATUS=", msg, sup.Cmd.Process.Pid)
	}
	if r.Supervisor != sup.Cmd.Process.Pid {
		t.Errorf("supervisor pid %d, want the foreground process %d", r.Supervisor, sup.Cmd.Process.Pid)
	}
	g.waitReady()
	sup.Cmd.Process.Signal(syscall.SIGTERM)
	if code := sup.wait(t, 40*time.Second); code != 0 {
		t.Errorf("run --supervise after SIGTERM: exit %d, want 0\n%s", code, sup.Stderr.String())
	}
	e.clean(g.name)
	b, _ := os.ReadFile(filepath.Join(logDir, g.name+".log"))
	if !strings.Contains(string(b), "testguest: rc 0") {
		t.Errorf("rc 0 did not run: SIGTERM was not an orderly stop; console log:\n%s", tail(string(b), 2000))
	}
}

// TestRestartOnFailure: with RESTART=on-failure a guest whose PID 1 is
// SIGKILLed comes back with a new PID (restarts counted); killed in a loop
// it is restarted at most 10 times a minute, then the supervisor gives up
// with the reason in status and exits non-zero.
func TestRestartOnFailure(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("rst", nil)
	g.home = e.home(g.config + "\nRESTART=on-failure")
	l := listenNotify(t)
	sup := g.startSupervised(l)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run --supervise stderr:\n%s", tail(sup.Stderr.String(), 4000))
		}
	})
	l.waitFor(t, "READY=1", 30*time.Second)
	killUntilGivenUp(e, g)
	if code := sup.wait(t, 30*time.Second); code == 0 {
		t.Errorf("run --supervise exited 0 after giving up restarts")
	}
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}

// TestRestartOnFailureDetached: the same with run --detach, whose
// supervisor becomes subhost-monitor while the guest runs and is executed
// afresh for each restart: the limit holds across those.
func TestRestartOnFailureDetached(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("rsd", nil)
	g.home = e.home(g.config + "\nRESTART=on-failure")
	g.boot()
	killUntilGivenUp(e, g)
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}

// killUntilGivenUp SIGKILLs g's PID 1 ten times, checking that it comes
// back each time with the restart counted, and an eleventh, after which
// the subhost must be failed with the reason.
func killUntilGivenUp(e *env, g *guest) {
	t := e.t
	t.Helper()
	var rs struct {
		report
		Restarts int `json:"restarts"`
	}
	status := func() {
		t.Helper()
		o, _, _ := e.run("status", "--json", g.name)
		rs.Restarts = 0
		if err := json.Unmarshal([]byte(o), &rs); err != nil {
			t.Fatal(err)
		}
	}
	pid := e.status(g.name).PID
	for i := 1; i <= 10; i++ {
		syscall.Kill(pid, syscall.SIGKILL)
		old := pid
		e.waitFor("the guest to come back", 20*time.Second, func() bool {
			status()
			pid = rs.PID
			return rs.State == "running" && pid != 0 && pid != old
		})
		t.Logf("kill %d: guest pid %d -> %d", i, old, pid)
		if rs.Restarts != i {
			t.Errorf("after %d kills restarts = %d", i, rs.Restarts)
		}
	}
	syscall.Kill(pid, syscall.SIGKILL)
	// Until the supervisor records why, status already says failed:
	// the guest is gone.
	poll(20*time.Second, func() bool {
		status()
		return strings.Contains(rs.Error, "giving up") || rs.PID != 0 && rs.PID != pid
	})
	if rs.State != "failed" || !strings.Contains(rs.Error, "RESTART=on-failure") || !strings.Contains(rs.Error, "giving up") {
		t.Errorf("after the 11th kill: state %s, error %q; want failed with the reason", rs.State, rs.Error)
	}
}

// TestRestartBadValue: a bad RESTART is bad input naming the variable,
// and nothing starts.
func TestRestartBadValue(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("rbad", nil)
	g.home = e.home(g.config + "\nRESTART=sometimes")
	_, er, code := e.inNet(g.ns, g.runArgs("--detach")...)
	if code != 2 || !strings.Contains(er, "RESTART") || !strings.Contains(er, "config:3") {
		t.Errorf("RESTART=sometimes: exit %d, want 2 and a line naming the file, line and variable: %s", code, er)
	}
	e.clean(g.name)
}
