package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// os/signal starts its delivery goroutine on first use and keeps it;
	// start it now so that the goroutine counts below do not see it.
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	signal.Stop(ch)
	os.Exit(m.Run())
}

// noGoroutineLeak fails the test if goroutines outlive it. Call it first:
// its check runs after every later cleanup.
func noGoroutineLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutine leak: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func newConsole(t *testing.T) *Console {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// startGuest runs argv as a session leader on the console's slave, opened
// by path as the init stage does. The returned channel closes once the
// guest is reaped.
func startGuest(t *testing.T, c *Console, argv ...string) <-chan struct{} {
	t.Helper()
	tty, err := os.OpenFile(c.SlavePath(), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PS1=$ ", "TERM=dumb"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
	})
	return waited
}

// guestTTY opens the slave as a guest process would, for the test to play
// the guest directly.
func guestTTY(t *testing.T, c *Console) *os.File {
	t.Helper()
	f, err := os.OpenFile(c.SlavePath(), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// collector gathers everything read from r.
type collector struct {
	mu   sync.Mutex
	b    bytes.Buffer
	done chan struct{}
}

func collect(t *testing.T, r *os.File) *collector {
	col := &collector{done: make(chan struct{})}
	go func() {
		defer close(col.done)
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Read(buf)
			col.mu.Lock()
			col.b.Write(buf[:n])
			col.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		r.Close()
		<-col.done
	})
	return col
}

// finish closes the pipe's write end w and waits for everything written
// to it: a relay that returned has written all it will, but the collector
// may not have read it yet.
func (col *collector) finish(w *os.File) {
	w.Close()
	<-col.done
}

func (col *collector) String() string {
	col.mu.Lock()
	defer col.mu.Unlock()
	return col.b.String()
}

func (col *collector) count(sub string) int { return strings.Count(col.String(), sub) }

func (col *collector) waitFor(t *testing.T, sub string) {
	t.Helper()
	waitUntil(t, "output "+strconvQuote(sub), func() bool { return strings.Contains(col.String(), sub) })
}

func strconvQuote(s string) string { return "\"" + strings.ReplaceAll(s, "\n", `\n`) + "\"" }

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

type attachOut struct {
	res AttachResult
	err error
}

func attachAsync(ctx context.Context, c *Console, in, out *os.File, opts AttachOptions) <-chan attachOut {
	ch := make(chan attachOut, 1)
	go func() {
		res, err := c.Attach(ctx, in, out, opts)
		ch <- attachOut{res, err}
	}()
	return ch
}

func dialAsync(ctx context.Context, path string, in, out *os.File, opts AttachOptions) <-chan attachOut {
	ch := make(chan attachOut, 1)
	go func() {
		res, err := Dial(ctx, path, in, out, opts)
		ch <- attachOut{res, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan attachOut) attachOut {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not return")
	}
	return attachOut{}
}

func expect(t *testing.T, got attachOut, res AttachResult, wantErr bool) {
	t.Helper()
	if got.res != res || (got.err != nil) != wantErr {
		t.Fatalf("relay = %v, %v; want %v (error: %v)", got.res, got.err, res, wantErr)
	}
}

// A script pipes commands into the console: no raw mode, and after its
// input ends the relay shows output until the shell exits.
func TestAttachPipeRunsScriptUntilGuestGone(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)
	startGuest(t, c, "/bin/sh", "-i")
	c.CloseSlave()

	inR, inW := pipe(t)
	outR, outW := pipe(t)
	out := collect(t, outR)
	done := attachAsync(context.Background(), c, inR, outW, AttachOptions{EscapeChar: DefaultEscape})
	if _, err := inW.WriteString("echo mark$((6*7)); exit\n"); err != nil {
		t.Fatal(err)
	}
	inW.Close()
	expect(t, wait(t, done), GuestGone, false)
	out.finish(outW)
	if !strings.Contains(out.String(), "mark42") {
		t.Fatalf("output %q lacks the command's output", out.String())
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after the guest left")
	}
}

// openUserTerminal makes a pty pair that plays the user's terminal: the
// test types on its master, Attach gets its slave.
func openUserTerminal(t *testing.T) (keyboard, tty *os.File) {
	t.Helper()
	m, s, _, err := openPTY()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

func termios(t *testing.T, f *os.File) unix.Termios {
	t.Helper()
	var tio *unix.Termios
	var err error
	control(f, func(fd int) { tio, err = unix.IoctlGetTermios(fd, unix.TCGETS) })
	if err != nil {
		t.Fatal(err)
	}
	return *tio
}

func setWinsize(t *testing.T, f *os.File, rows, cols uint16) {
	t.Helper()
	var err error
	control(f, func(fd int) { err = unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}) })
	if err != nil {
		t.Fatal(err)
	}
}

func waitSize(t *testing.T, c *Console, rows, cols uint16) {
	t.Helper()
	waitUntil(t, "window size", func() bool {
		r, cl, err := c.Size()
		return err == nil && r == rows && cl == cols
	})
}

func TestAttachTerminalRawModeWindowSizeDetach(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)
	g := guestTTY(t, c)
	kb, tty := openUserTerminal(t)
	screen := collect(t, kb)
	before := termios(t, tty)
	setWinsize(t, tty, 30, 100)

	done := attachAsync(context.Background(), c, tty, tty, AttachOptions{EscapeChar: DefaultEscape})
	waitUntil(t, "raw mode", func() bool { return termios(t, tty).Lflag&unix.ICANON == 0 })
	raw := termios(t, tty)
	if raw.Lflag&(unix.ECHO|unix.ISIG) != 0 || raw.Oflag&unix.OPOST != 0 {
		t.Fatalf("terminal not raw: %+v", raw)
	}
	waitSize(t, c, 30, 100)
	setWinsize(t, tty, 40, 120)
	unix.Kill(os.Getpid(), unix.SIGWINCH)
	waitSize(t, c, 40, 120)

	// Guest output reaches the terminal; keys reach the guest.
	g.WriteString("hello from guest\n")
	screen.waitFor(t, "hello from guest")
	kb.WriteString("typed\r")
	line := make([]byte, 64)
	n, err := g.Read(line)
	if err != nil || string(line[:n]) != "typed\n" {
		t.Fatalf("guest read %q, %v", line[:n], err)
	}

	kb.WriteString("\x1d?")
	screen.waitFor(t, "^]q")
	kb.WriteString("\x1dd")
	expect(t, wait(t, done), Detached, false)
	if after := termios(t, tty); after != before {
		t.Fatalf("terminal settings not restored:\n got %+v\nwant %+v", after, before)
	}
}

func TestAttachEscapesAndCancel(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		esc     byte
		cancel  bool
		want    AttachResult
		wantErr bool
	}{
		{"detach", "\x1dd", DefaultEscape, false, Detached, false},
		{"poweroff after a line", "ls\n\x1dq", DefaultEscape, false, PowerOff, false},
		{"mid-line escape is data", "ls\x1dq", DefaultEscape, true, Detached, true},
		{"escapes disabled", "\x1dd", 0, true, Detached, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noGoroutineLeak(t)
			c := newConsole(t)
			g := guestTTY(t, c)
			inR, inW := pipe(t)
			outR, outW := pipe(t)
			collect(t, outR)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := attachAsync(ctx, c, inR, outW, AttachOptions{EscapeChar: tt.esc})
			inW.WriteString(tt.input)
			if tt.cancel {
				// Not an escape: the bytes reach the guest and the relay
				// goes on until cancelled.
				inW.WriteString("\n")
				buf := make([]byte, 64)
				n, _ := g.Read(buf)
				want := strings.ReplaceAll(tt.input, "\x1d\x1d", "\x1d") + "\n"
				if string(buf[:n]) != want {
					t.Fatalf("guest read %q, want %q", buf[:n], want)
				}
				cancel()
			}
			got := wait(t, done)
			expect(t, got, tt.want, tt.wantErr)
			if tt.name == "poweroff after a line" {
				// What was typed before the sequence reached the guest.
				buf := make([]byte, 64)
				g.SetReadDeadline(time.Now().Add(10 * time.Second))
				if n, err := g.Read(buf); err != nil || string(buf[:n]) != "ls\n" {
					t.Fatalf("guest read %q, %v", buf[:n], err)
				}
			}
			if tt.cancel && !errors.Is(got.err, context.Canceled) {
				t.Fatalf("error %v, want context.Canceled", got.err)
			}
		})
	}
}

// A terminal that stops reading (Ctrl-S, a stuck ssh) loses output, with
// a note, but never holds the guest up.
func TestAttachSlowTerminalDoesNotStall(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)
	g := guestTTY(t, c)
	inR, inW := pipe(t)
	outR, outW := pipe(t)
	done := attachAsync(context.Background(), c, inR, outW, AttachOptions{EscapeChar: DefaultEscape})
	waitUntil(t, "attach", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.fg != nil })

	const total = 4 << 20 // beyond the 1 MiB queue and the pipe's buffer
	wrote := make(chan error, 1)
	go func() {
		_, err := g.Write(bytes.Repeat([]byte("y"), total))
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("guest output stalled by a terminal that does not read")
	}
	out := collect(t, outR)
	// The note comes with the first batch queued after the drop, so the
	// queue has room again once it shows.
	out.waitFor(t, "bytes of console output dropped")
	g.WriteString("END\n")
	out.waitFor(t, "END")
	inW.WriteString("\x1dd")
	expect(t, wait(t, done), Detached, false)
}

// A viewer's ^S, which its raw terminal passes into the guest's pty,
// does not stop the console's output: the guest goes on writing.
func TestViewerCtrlSDoesNotStopTheConsole(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)
	g := guestTTY(t, c)
	inR, inW := pipe(t)
	outR, outW := pipe(t)
	done := attachAsync(context.Background(), c, inR, outW, AttachOptions{EscapeChar: DefaultEscape})
	waitUntil(t, "attach", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.fg != nil })
	out := collect(t, outR)
	inW.WriteString("\x13") // ^S
	time.Sleep(100 * time.Millisecond)
	wrote := make(chan error, 1)
	go func() {
		_, err := g.WriteString("still-writing\n")
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		inW.WriteString("\x11") // ^Q, to end the test
		t.Fatal("the guest's console output stopped at a viewer's ^S")
	}
	out.waitFor(t, "still-writing")
	inW.WriteString("\r\x1dd") // an escape starts a line
	expect(t, wait(t, done), Detached, false)
}

func TestOneForegroundAttach(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)
	inR, _ := pipe(t)
	outR, outW := pipe(t)
	collect(t, outR)
	ctx, cancel := context.WithCancel(context.Background())
	done := attachAsync(ctx, c, inR, outW, AttachOptions{})
	waitUntil(t, "attach", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.fg != nil })
	if _, err := c.Attach(context.Background(), inR, outW, AttachOptions{}); err == nil {
		t.Fatal("second foreground Attach accepted")
	}
	cancel()
	wait(t, done)
}

func TestCloseEndsAttach(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)
	inR, _ := pipe(t)
	outR, outW := pipe(t)
	collect(t, outR)
	done := attachAsync(context.Background(), c, inR, outW, AttachOptions{})
	waitUntil(t, "attach", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.fg != nil })
	c.Close()
	expect(t, wait(t, done), GuestGone, false)
	if err := c.Rearm(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Rearm after Close: %v", err)
	}
}

// A reboot: the guest leaves, the console is rearmed, the next guest
// writes on the same pty and the relay with Replay shows both sessions.
func TestRearmForReboot(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)
	if err := c.Rearm(); err == nil {
		t.Fatal("Rearm accepted while the session runs")
	}
	reaped := startGuest(t, c, "/bin/sh", "-c", "echo first boot")
	c.CloseSlave()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("first session did not end")
	}
	// As the runner does: rearm once the old guest is reaped, so that its
	// exit's hang-up of the tty (it was a session leader with the console
	// as controlling terminal) is over.
	<-reaped
	if err := c.Rearm(); err != nil {
		t.Fatal(err)
	}
	startGuest(t, c, "/bin/sh", "-c", "read x; echo second $x")
	c.CloseSlave()

	inR, inW := pipe(t)
	outR, outW := pipe(t)
	out := collect(t, outR)
	done := attachAsync(context.Background(), c, inR, outW, AttachOptions{Replay: true})
	inW.WriteString("boot\n")
	expect(t, wait(t, done), GuestGone, false)
	out.finish(outW)
	if s := out.String(); !strings.Contains(s, "first boot") || !strings.Contains(s, "second boot") {
		t.Fatalf("output %q", s)
	}
}

func TestLogRotation(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)
	g := guestTTY(t, c)
	dir := filepath.Join(t.TempDir(), "log")
	path := filepath.Join(dir, "guest.log")
	if err := c.LogTo(path, 1000); err != nil {
		t.Fatal(err)
	}
	chunk := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	g.Write(chunk('a', 1000))
	g.Write(chunk('b', 1000))
	g.Write(chunk('c', 500))
	waitUntil(t, "log content", func() bool {
		cur, _ := os.ReadFile(path)
		return bytes.Equal(cur, chunk('c', 500))
	})
	old, err := os.ReadFile(path + ".1")
	if err != nil || !bytes.Equal(old, chunk('b', 1000)) {
		t.Fatalf("rotated log: %q, %v", old, err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600, path + ".1": 0o600} {
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode() != want {
			t.Fatalf("%s: mode %v, %v; want %v", p, fi.Mode(), err, want)
		}
	}

	// A symlink planted at the log path is not followed.
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("keep"), 0o644)
	link := filepath.Join(dir, "link.log")
	os.Symlink(victim, link)
	if err := c.LogTo(link, 1000); err == nil {
		t.Fatal("LogTo followed a symlink")
	}
	if err := c.LogTo("", 0); err != nil {
		t.Fatal(err)
	}
}

// A console log removed while the guest runs (by hand, or by logrotate
// with nocreate) does not stop the log: the next rotation starts a new
// file with what follows.
func TestLogRotationAfterRemoval(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)
	g := guestTTY(t, c)
	path := filepath.Join(t.TempDir(), "guest.log")
	if err := c.LogTo(path, 1000); err != nil {
		t.Fatal(err)
	}
	chunk := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	g.Write(chunk('a', 600))
	waitUntil(t, "first output logged", func() bool {
		cur, _ := os.ReadFile(path)
		return bytes.Equal(cur, chunk('a', 600))
	})
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	// 400 bytes fill the removed file to the cap; the rest must reach a
	// new one.
	g.Write(chunk('b', 600))
	g.Write(chunk('c', 100))
	want := append(chunk('b', 200), chunk('c', 100)...)
	deadline := time.Now().Add(5 * time.Second)
	for {
		cur, err := os.ReadFile(path)
		if err == nil && bytes.Equal(cur, want) {
			break
		}
		if time.Now().After(deadline) || c.LogErr() != nil {
			t.Fatalf("after removal the log holds %d bytes (%v), want %d; log error: %v", len(cur), err, len(want), c.LogErr())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode() != 0o600 {
		t.Fatalf("new log: %v, %v; want mode 0600", fi, err)
	}
}

// socketPath gives a socket path in a fresh 0700 directory.
func socketPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "console.sock")
}

func serve(t *testing.T, c *Console) string {
	t.Helper()
	path := socketPath(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := c.Serve(ctx, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func clientCount(c *Console) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.clients)
}

func TestServeTwoClientsReplayAndInput(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)
	g := guestTTY(t, c)
	path := serve(t, c)
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v, %v", path, fi.Mode(), err)
	}

	g.WriteString("before attach\n")
	waitUntil(t, "ring", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return bytes.Contains(c.ring.b, []byte("before attach"))
	})

	type client struct {
		inW  *os.File
		out  *collector
		done <-chan attachOut
	}
	var cl [2]client
	for i := range cl {
		inR, inW := pipe(t)
		outR, outW := pipe(t)
		cl[i] = client{inW, collect(t, outR), dialAsync(context.Background(), path, inR, outW, AttachOptions{EscapeChar: DefaultEscape})}
	}
	for _, x := range cl {
		x.out.waitFor(t, "before attach")
	}
	waitUntil(t, "two clients", func() bool { return clientCount(c) == 2 })
	g.WriteString("live line\n")
	for _, x := range cl {
		x.out.waitFor(t, "live line")
	}

	cl[1].inW.WriteString("from client\n")
	buf := make([]byte, 64)
	if n, err := g.Read(buf); err != nil || string(buf[:n]) != "from client\n" {
		t.Fatalf("guest read %q, %v", buf[:n], err)
	}
	// The guest's echo goes to both.
	cl[0].out.waitFor(t, "from client")

	cl[0].inW.WriteString("\x1dd")
	expect(t, wait(t, cl[0].done), Detached, false)
	waitUntil(t, "one client", func() bool { return clientCount(c) == 1 })
	g.WriteString("after detach\n")
	cl[1].out.waitFor(t, "after detach")

	// Closing the console hangs up on the remaining client and removes
	// the socket.
	c.Close()
	expect(t, wait(t, cl[1].done), GuestGone, false)
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
}

func TestServeStuckClientDoesNotStall(t *testing.T) {
	noGoroutineLeak(t)
	defer func(d time.Duration) { clientStuckTimeout = d }(clientStuckTimeout)
	clientStuckTimeout = 500 * time.Millisecond
	c := newConsole(t)
	g := guestTTY(t, c)
	path := serve(t, c)

	stuck, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	inR, _ := pipe(t)
	outR, outW := pipe(t)
	good := collect(t, outR)
	done := dialAsync(context.Background(), path, inR, outW, AttachOptions{})
	waitUntil(t, "two clients", func() bool { return clientCount(c) == 2 })

	// A burst far larger than every queue and socket buffer together.
	const total = 8 << 20
	wrote := make(chan error, 1)
	go func() {
		_, err := g.Write(bytes.Repeat([]byte("x"), total))
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("guest output stalled by a stuck client")
	}
	// The good client may lose part of the burst (and is told), but
	// keeps getting output: a marker written after the burst arrives
	// (written until it does, as it may itself fall into a drop).
	waitUntil(t, "marker at the good client", func() bool {
		g.WriteString("END\n")
		time.Sleep(20 * time.Millisecond)
		return strings.Contains(good.String(), "END")
	})
	if n := good.count("x"); n < total && !strings.Contains(good.String(), "dropped") {
		t.Fatalf("good client got %d of %d bytes and no drop note", n, total)
	}
	waitUntil(t, "stuck client dropped", func() bool { return clientCount(c) == 1 })
	// The stuck client, reading at last, finds its connection closed.
	stuck.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, stuck); err != nil {
		t.Fatalf("stuck client: %v", err)
	}
	c.Close()
	expect(t, wait(t, done), GuestGone, false)
}

func TestDialPowerOffAndResize(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)
	path := serve(t, c)
	kb, tty := openUserTerminal(t)
	screen := collect(t, kb)
	before := termios(t, tty)
	setWinsize(t, tty, 33, 111)

	done := dialAsync(context.Background(), path, tty, tty, AttachOptions{EscapeChar: DefaultEscape})
	waitSize(t, c, 33, 111)
	if termios(t, tty).Lflag&unix.ICANON != 0 {
		t.Fatal("client terminal not raw")
	}
	setWinsize(t, tty, 50, 132)
	unix.Kill(os.Getpid(), unix.SIGWINCH)
	waitSize(t, c, 50, 132)
	kb.WriteString("\x1d?")
	screen.waitFor(t, "power the guest off")
	kb.WriteString("\x1dq")
	expect(t, wait(t, done), PowerOff, false)
	select {
	case <-c.PowerOffRequests():
	case <-time.After(10 * time.Second):
		t.Fatal("no power-off request")
	}
	if after := termios(t, tty); after != before {
		t.Fatal("client terminal settings not restored")
	}
}

// A client that does not speak the protocol is dropped; the others stay.
func TestServeDropsGarbage(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)
	g := guestTTY(t, c)
	path := serve(t, c)
	bad, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	waitUntil(t, "client", func() bool { return clientCount(c) == 1 })
	bad.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	waitUntil(t, "garbage client dropped", func() bool { return clientCount(c) == 0 })

	inR, _ := pipe(t)
	outR, outW := pipe(t)
	out := collect(t, outR)
	ctx, cancel := context.WithCancel(context.Background())
	done := dialAsync(ctx, path, inR, outW, AttachOptions{})
	waitUntil(t, "client", func() bool { return clientCount(c) == 1 })
	g.WriteString("still here\n")
	out.waitFor(t, "still here")
	cancel()
	expect(t, wait(t, done), Detached, true)
}

func TestServeRefusesBadPaths(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)

	open := t.TempDir()
	os.Chmod(open, 0o777)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	live := serve(t, c)

	for _, tt := range []struct{ name, path, want string }{
		{"world-writable directory", filepath.Join(open, "s.sock"), "writable by others"},
		{"not a socket", file, "not a socket"},
		{"live socket", live, "in use"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Serve(context.Background(), tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Serve(%s) = %v, want %q", tt.path, err, tt.want)
			}
		})
	}

	// A stale socket (its server died) is replaced.
	stale := socketPath(t)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Serve(ctx, stale); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	if fi, err := os.Lstat(stale); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("replaced socket: %v, %v", fi.Mode(), err)
	}
}

// A hung guest that reads no console input can still be powered off from
// the console: input queues are bounded and escapes are handled ahead of
// them.
func TestPowerOffWhileGuestIgnoresInput(t *testing.T) {
	flood := bytes.Repeat([]byte("some typing the guest never reads\n"), 10000) // 340 KB

	t.Run("socket client, piped input", func(t *testing.T) {
		noGoroutineLeak(t)
		c := newConsole(t)
		guestTTY(t, c) // held, never read
		path := serve(t, c)
		inR, inW := pipe(t)
		outR, outW := pipe(t)
		collect(t, outR)
		done := dialAsync(context.Background(), path, inR, outW, AttachOptions{EscapeChar: DefaultEscape})
		go func() {
			inW.Write(flood)
			inW.WriteString("\x1dq")
		}()
		expect(t, wait(t, done), PowerOff, false)
		select {
		case <-c.PowerOffRequests():
		case <-time.After(10 * time.Second):
			t.Fatal("no power-off request")
		}
	})

	t.Run("foreground terminal", func(t *testing.T) {
		noGoroutineLeak(t)
		c := newConsole(t)
		guestTTY(t, c)
		kb, tty := openUserTerminal(t)
		collect(t, kb)
		done := attachAsync(context.Background(), c, tty, tty, AttachOptions{EscapeChar: DefaultEscape})
		waitUntil(t, "raw mode", func() bool { return termios(t, tty).Lflag&unix.ICANON == 0 })
		go func() {
			kb.Write(flood)
			kb.WriteString("\x1dq")
		}()
		expect(t, wait(t, done), PowerOff, false)
	})
}
