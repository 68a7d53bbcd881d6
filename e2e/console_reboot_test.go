package e2e

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/testguest"
	"github.com/subhost/subhost/sdk/stagetest"
)

// TestDetachedConsoleAcrossReboot: a `subhost console` client attached to
// a detached guest stays attached while the guest reboots, which moves the
// console from subhost-monitor to the full supervisor and back: what it
// types once the new guest's console shell runs reaches it, and what that
// shell prints comes back, each line once and in order. From a terminal,
// and with input from a pipe.
func TestDetachedConsoleAcrossReboot(t *testing.T) {
	for _, mode := range []string{"pty", "pipe"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			g := e.newGuest("crb"+mode[:2], func(r *testguest.Root) { r.ConsoleShell() })
			e.mustRun(g.ns, g.runArgs("--detach")...)
			g.waitReady()
			pid := e.status(g.name).PID

			var c consoleClient
			if mode == "pty" {
				c = ptyClient{e.startPty("", "console", g.name)}
			} else {
				c = startPipeClient(t, e, g.name)
			}
			// What the client types is echoed by the guest's terminal:
			// each check looks for what only the shell's arithmetic makes.
			time.Sleep(200 * time.Millisecond) // let it attach before typing
			c.send("echo B$((40+2))E\n")
			at := c.expect(0, "B42E", 10*time.Second)

			g.enter("reboot")
			e.waitFor("a new PID 1", 15*time.Second, func() bool {
				r, err := e.statusErr(g.name)
				return err == nil && r.State == "running" && r.PID != 0 && r.PID != pid
			})
			g.waitReady()
			// The new console shell starts in the background of rcS: try
			// until it answers.
			answered := func(n int) int {
				for k := 1; k <= n; k++ {
					if i := strings.Index(c.output()[at:], fmt.Sprintf("A%dE", k*3)); i >= 0 {
						return at + i
					}
				}
				return -1
			}
			for n := 1; ; n++ {
				c.send(fmt.Sprintf("echo A$((%d*3))E\n", n))
				time.Sleep(100 * time.Millisecond)
				if i := answered(n); i >= 0 {
					at = i
					break
				}
				if n == 50 {
					ps, _ := g.enter("ps")
					stty, _ := g.enter("stty", "-a", "-F", "/dev/console")
					t.Fatalf("the rebooted guest's console shell never answered; the client saw:\n%s\nps:\n%s\nstty:\n%s", tail(c.output(), 2000), ps, stty)
				}
				time.Sleep(100 * time.Millisecond)
			}
			// A burst of lines: every answer once, in order.
			var burst strings.Builder
			for i := 1; i <= 20; i++ {
				fmt.Fprintf(&burst, "echo L$((%d+100))E\n", i)
			}
			c.send(burst.String())
			c.expect(at, "L120E", 10*time.Second)
			out := c.output()[at:]
			last := -1
			for i := 1; i <= 20; i++ {
				want := fmt.Sprintf("L%dE", i+100)
				if n := strings.Count(out, want); n != 1 {
					t.Errorf("%s came back %d times, want once", want, n)
				}
				if j := strings.Index(out, want); j < last {
					t.Errorf("%s came back out of order", want)
				} else {
					last = j
				}
			}
			if code := c.detach(t); code != 0 {
				t.Errorf("console: exit %d after detaching; it saw:\n%s", code, tail(c.output(), 2000))
			}
			e.mustRun("", "stop", g.name)
			e.clean(g.name)
		})
	}
}

// consoleClient is a running `subhost console`, on a terminal or on pipes.
type consoleClient interface {
	send(text string)
	output() string
	expect(from int, want string, timeout time.Duration) int
	// detach ends the session and returns the command's exit status.
	detach(t *testing.T) int
}

type ptyClient struct{ s *ptySession }

func (c ptyClient) send(text string) { c.s.send(strings.ReplaceAll(text, "\n", "\r")) }
func (c ptyClient) output() string   { return c.s.Output() }
func (c ptyClient) expect(from int, want string, d time.Duration) int {
	return c.s.expect(from, want, d)
}
func (c ptyClient) detach(t *testing.T) int {
	c.s.send("\x1dd") // Ctrl-] d
	return c.s.wait(10 * time.Second)
}

// pipeClient is `subhost console` with its input from a pipe: a plain
// copy, which stays attached after the end of its input (it goes on
// showing output) until it is interrupted.
type pipeClient struct {
	t    *testing.T
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *stagetest.SyncBuffer
	done chan struct{} // closed when the command has ended
}

func startPipeClient(t *testing.T, e *env, name string) *pipeClient {
	t.Helper()
	cmd := e.command(context.Background(), "", "console", name)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &pipeClient{t: t, cmd: cmd, in: in, out: &stagetest.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		in.Close()
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
		}
	})
	return c
}

func (c *pipeClient) send(text string) {
	c.t.Helper()
	if _, err := io.WriteString(c.in, text); err != nil {
		c.t.Fatalf("console input: %v", err)
	}
}

func (c *pipeClient) output() string { return c.out.String() }

func (c *pipeClient) expect(from int, want string, d time.Duration) int {
	c.t.Helper()
	at := -1
	poll(d, func() bool {
		if i := strings.Index(c.output()[from:], want); i >= 0 {
			at = from + i + len(want)
			return true
		}
		return false
	})
	if at < 0 {
		c.t.Fatalf("console: no %q within %v; output so far:\n%s", want, d, tail(c.output(), 2000))
	}
	return at
}

func (c *pipeClient) detach(t *testing.T) int {
	c.in.Close()
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
		return 0 // interrupted: how it ends is not the point here
	case <-time.After(10 * time.Second):
		t.Fatalf("console did not end 10 s after SIGINT")
		return -1
	}
}
