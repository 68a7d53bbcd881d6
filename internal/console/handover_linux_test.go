package console

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestHandOverAndAdopt passes a served console to a new Console (as the
// process after an exec would adopt it): the guest notices nothing, a
// connected client reconnects and sees output from before and after, its
// input reaches the guest, and the log goes on in the same file.
func TestHandOverAndAdopt(t *testing.T) {
	noGoroutineLeak(t)
	c := newConsole(t)
	g := guestTTY(t, c)
	c.CloseSlave()
	logPath := filepath.Join(t.TempDir(), "console.log")
	if err := c.LogTo(logPath, 1<<20); err != nil {
		t.Fatal(err)
	}
	path := serve(t, c)

	inR, inW := pipe(t)
	outR, outW := pipe(t)
	out := collect(t, outR)
	done := dialAsync(context.Background(), path, inR, outW, AttachOptions{EscapeChar: DefaultEscape})
	waitUntil(t, "client", func() bool { return clientCount(c) == 1 })
	g.WriteString("before hand-over\n")
	out.waitFor(t, "before hand-over")

	inW.WriteString("typed early\n") // may still be on its way
	h, err := c.HandOver()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the socket must stay bound across the hand-over: %v", err)
	}
	g.WriteString("in between\n") // waits in the pty

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := Adopt(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	out.waitFor(t, "in between")
	waitUntil(t, "client back", func() bool { return clientCount(a) == 1 })
	g.WriteString("after adoption\n")
	out.waitFor(t, "after adoption")
	if n := out.count("before hand-over"); n != 1 {
		t.Errorf("output before the hand-over shown %d times", n)
	}

	inW.WriteString("typed late\n")
	var typed []byte
	buf := make([]byte, 64)
	for !bytes.Contains(typed, []byte("typed late\n")) {
		n, err := g.Read(buf)
		if err != nil {
			t.Fatalf("guest read %q, %v", typed, err)
		}
		typed = append(typed, buf[:n]...)
	}
	if string(typed) != "typed early\ntyped late\n" {
		t.Fatalf("the guest read %q; want both lines, in order, once", typed)
	}

	g.Close()
	<-a.Done()
	a.Close()
	expect(t, wait(t, done), GuestGone, false)
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"before hand-over", "in between", "after adoption"} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestHandOverRefusesHeldSlave: before the guest holds its console, the
// console cannot move (its session would end).
func TestHandOverRefusesHeldSlave(t *testing.T) {
	c := newConsole(t)
	if _, err := c.HandOver(); err == nil {
		t.Fatal("hand-over with the slave held: no error")
	}
}
