package console

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// Relay returns once the command has ended and its output gone quiet,
// even while the user's input still has more to give than the pty takes:
// a background process of the command that keeps the slave open without
// reading it must not keep the user waiting (its write would block for
// ever, and Relay waits for its input goroutine).
func TestRelayReturnsWithThePtyInputFull(t *testing.T) {
	master, slave, _, err := openPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer slave.Close() // held, never read: the background process
	// Raw, as a full-screen program leaves it: the input is kept, not
	// dropped once the line is full.
	if _, err := makeRaw(int(slave.Fd())); err != nil {
		t.Fatal(err)
	}
	inR, inW := pipe(t)
	outR, outW := pipe(t)
	go io.Copy(io.Discard, outR)
	go inW.Write(bytes.Repeat([]byte("y"), 200<<10)) // ends with the pipe
	done := make(chan struct{})
	returned := make(chan error, 1)
	go func() { returned <- Relay(master, inR, outW, done) }()
	time.Sleep(300 * time.Millisecond) // the pty's input fills
	close(done)
	select {
	case err := <-returned:
		if err != nil {
			t.Errorf("Relay: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Relay still waits after the command ended, its pty's input full")
	}
}
