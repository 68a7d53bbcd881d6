package console

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Relay copies between the user's terminal (in, out) and a pty master
// that a command elsewhere (`subhost enter`'s, in a guest) has the slave
// of: in raw mode, with the window size copied now and on every SIGWINCH,
// and without escape sequences. The master must be non-blocking (in Go's
// poller). Relay returns when the command's side is gone (the master
// reports EIO once no process holds the slave), or, once done is closed
// (the command has ended), when the output has gone quiet for a moment:
// a background process that keeps the slave open does not keep the user
// waiting. Relay restores the terminal before it returns.
func Relay(master, in, out *os.File, done <-chan struct{}) error {
	inFD, outFD, w, err := relayFDs(in, out)
	if err != nil {
		return err
	}
	defer w.close()
	term := isTerminal(inFD)
	if term {
		restore, err := makeRaw(inFD)
		if err != nil {
			return err
		}
		defer restore()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		w.wake()
		// The input goroutine may be waiting to write into a pty whose
		// input is full (a background process holds the slave without
		// reading it): cut that write short.
		_ = master.SetWriteDeadline(time.Now())
		wg.Wait()
	}()
	if sizeFD := sizeSource(inFD, outFD, term); sizeFD >= 0 {
		followSize(sizeFD, stop, &wg, func(rows, cols uint16) error {
			return control(master, func(fd int) {
				_ = unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
			})
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			n, err := readFD(inFD, buf, w)
			if err != nil {
				return // EOF of the user's input, or the relay ends
			}
			if _, err := master.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	// The command's output, until EIO, or quiet after done.
	buf := make([]byte, 32<<10)
	for {
		select {
		case <-done:
			_ = master.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		default:
			_ = master.SetReadDeadline(time.Now().Add(time.Second))
		}
		n, err := master.Read(buf)
		if n > 0 {
			if werr := writeFD(outFD, buf[:n], w); werr != nil {
				return fmt.Errorf("write the command's output: %w", werr)
			}
			continue
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			select {
			case <-done:
				return nil
			default:
			}
		case errors.Is(err, unix.EIO), err != nil:
			return nil
		}
	}
}
