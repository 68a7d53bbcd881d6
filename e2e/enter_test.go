package e2e

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/testbin"
	"github.com/subhost/subhost/internal/testguest"
)

// TestEnterHandsOverNothingOfTheHost: `subhost enter` from a terminal
// gives the command a new pty of the guest's own devpts, with its own
// session, never the caller's terminal, so a TIOCSTI from the guest lands
// on the guest's pty; from pipes it passes data, stderr and the exit
// status through fresh pipes and nothing else; and while a guest process
// reads every /proc/PID/exe in a loop, 100 enters show it no executable
// that is not the guest's own (nsenter from the host showed the host's).
func TestEnterHandsOverNothingOfTheHost(t *testing.T) {
	e := newEnv(t)
	probe, err := os.ReadFile(testbin.MustBuild(t, "enterprobe", "./e2e/testdata/enterprobe"))
	if err != nil {
		t.Fatal(err)
	}
	g := e.newGuest("hent", func(r *testguest.Root) {
		r.WriteFile("bin/enterprobe", string(probe), 0o755)
		r.RcS("/bin/enterprobe scan </dev/null >/dev/null 2>&1 &")
	})
	g.boot()

	// From a terminal.
	s := e.startPty("", "enter", g.name, "--", "/bin/enterprobe", "tty")
	if code := s.wait(20 * time.Second); code != 0 {
		t.Errorf("enter -- enterprobe tty: exit %d:\n%s", code, s.Output())
	}
	out := strings.ReplaceAll(s.Output(), "\r", "")
	for _, want := range []string{"STDIN:/dev/pts/", "OWN-DEVPTS", "CTTY-FOREGROUND", "OWN-SESSION", "STI-READ:sti-mark"} {
		if !strings.Contains(out, want) {
			t.Errorf("enter from a terminal: the command did not say %q:\n%s", want, out)
		}
	}

	// From pipes: data, stderr and the exit status; fds 0-2 only.
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := e.command(ctx, "", "enter", g.name, "--", "sh", "-c",
		`read x; echo "got $x"; echo oops >&2; ls /proc/self/fd | tr '\n' ' '; exit 5`)
	cmd.Stdin = strings.NewReader("hello\n")
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	code := exitCode(cmd.Run())
	if code != 5 || !strings.HasPrefix(o.String(), "got hello\n") || strings.TrimSpace(er.String()) != "oops" {
		t.Errorf("enter with pipes: exit %d, stdout %q, stderr %q; want 5, got hello, oops", code, o.String(), er.String())
	}
	// ls's own directory descriptor is 3.
	if fds := strings.TrimPrefix(o.String(), "got hello\n"); strings.TrimSpace(fds) != "0 1 2 3" {
		t.Errorf("enter with pipes: the command has descriptors %q, want 0 1 2 (and ls's own 3)", fds)
	}

	// 100 enters under the scanner's eyes.
	before := scanCount(t, g)
	for i := range 100 {
		if _, code := g.enter("true"); code != 0 {
			t.Fatalf("enter %d: exit %d", i, code)
		}
	}
	if after := scanCount(t, g); after <= before {
		t.Errorf("the guest's /proc/*/exe scanner did not run (%d reads before, %d after)", before, after)
	}
	if out, code := g.enter("cat", "/run/exe-scan.foreign"); code == 0 {
		t.Errorf("guest processes saw executables that are not the guest's own:\n%s", out)
	}
	e.mustRun("", "stop", g.name)
	e.clean(g.name)
}

// scanCount reads the scanner's count, waiting for its first one: the
// scanner is started in the background by rcS and may not have finished a
// round when the guest reports running.
func scanCount(t *testing.T, g *guest) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, code := g.enter("cat", "/run/exe-scan.count")
		n, err := strconv.Atoi(strings.TrimSpace(out))
		if code == 0 && err == nil {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest's scanner wrote no count in 10 s (cat: exit %d, %q)", code, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
