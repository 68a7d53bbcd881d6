package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// AttachOptions tune a relay.
type AttachOptions struct {
	// EscapeChar starts an escape sequence at the start of a line; 0
	// disables escape sequences. DefaultEscape is Ctrl-].
	EscapeChar byte
	// Replay makes Attach first show the last ReplayBytes of output.
	// Socket clients always get the replay.
	Replay bool
}

// AttachResult says why a relay ended.
type AttachResult int

const (
	// GuestGone: the guest session ended (no process holds the pty slave
	// any more), the console was closed, or (Dial) the server hung up.
	GuestGone AttachResult = iota + 1
	// Detached: the user typed the detach sequence; the guest runs on.
	// Also the result when the relay stopped with an error (the error
	// says why); the guest is untouched then too.
	Detached
	// PowerOff: the user asked for the guest to be powered off.
	PowerOff
)

func (r AttachResult) String() string {
	switch r {
	case GuestGone:
		return "guest gone"
	case Detached:
		return "detached"
	case PowerOff:
		return "power off"
	}
	return fmt.Sprintf("AttachResult(%d)", int(r))
}

const (
	// foregroundQueue bounds output waiting for the user's terminal
	// (stopped with Ctrl-S, say); past it output is dropped.
	foregroundQueue = 1 << 20
	// flushTimeout bounds how long the final output of a guest that is
	// gone may take to reach the terminal.
	flushTimeout = 5 * time.Second
	// keyQueue bounds typed input waiting for a guest that does not read
	// its console; past it keystrokes are dropped (piped input waits).
	keyQueue = 64 << 10
	// keyFlushTimeout bounds how long input typed just before a detach
	// may take to reach the guest (a hung guest never takes it).
	keyFlushTimeout = 500 * time.Millisecond
)

type relayEnd struct {
	res AttachResult
	err error
}

// endOnce sends e unless an end is already pending.
func endOnce(ch chan relayEnd, e relayEnd) {
	select {
	case ch <- e:
	default:
	}
}

// Attach relays the console to the user's terminal (in, out) until the
// guest session ends (GuestGone), the user types an escape sequence
// (Detached, PowerOff), or ctx is done (Detached and ctx's error). Only one
// foreground Attach runs at a time. in and out must stay open until it
// returns. See the package documentation for terminal and pipe input.
func (c *Console) Attach(ctx context.Context, in, out *os.File, opts AttachOptions) (res AttachResult, err error) {
	inFD, outFD, w, err := relayFDs(in, out)
	if err != nil {
		return Detached, err
	}
	defer w.close()

	view := newSink(foregroundQueue)
	sess, err := c.addViewer(view, opts.Replay, true)
	if err != nil {
		return Detached, err
	}
	defer c.removeViewer(view)

	term := isTerminal(inFD)
	if term {
		restore, err := makeRaw(inFD)
		if err != nil {
			return Detached, err
		}
		defer restore()
	}

	stop := make(chan struct{})
	ends := make(chan relayEnd, 1)
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		w.wake()
		wg.Wait()
	}()

	if sizeFD := sizeSource(inFD, outFD, term); sizeFD >= 0 {
		followSize(sizeFD, stop, &wg, func(rows, cols uint16) error { return c.SetSize(rows, cols) })
	}

	outDone := make(chan struct{})
	keys := newSink(keyQueue)
	wg.Add(3)
	go func() {
		defer wg.Done()
		defer close(outDone)
		if err := pumpOut(view, stop, outFD, w); err != nil {
			endOnce(ends, relayEnd{Detached, fmt.Errorf("write console output: %w", err)})
		}
	}()
	keysDone := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(keysDone)
		forward(keys, stop, func(p []byte) error { return c.writeInput(stop, p) })
	}()
	go func() {
		defer wg.Done()
		relayInput(inFD, term, w, stop, opts.EscapeChar, keys, ends,
			func() { view.offer(helpText(opts.EscapeChar)) },
			func() error { return nil })
	}()

	select {
	case <-sess.gone:
		res = GuestGone
	case e := <-ends:
		res, err = e.res, e.err
	case <-ctx.Done():
		res, err = Detached, ctx.Err()
	}
	c.removeViewer(view)
	// Within bounds: when the guest is gone, let its last words reach the
	// terminal; otherwise let what was typed before the end reach it.
	keys.close(true)
	if res == GuestGone {
		// Everything the guest wrote is queued by now: the reader queues
		// before it ends the session.
		view.close(true)
		waitAtMost(outDone, flushTimeout)
	} else {
		waitAtMost(keysDone, keyFlushTimeout)
	}
	view.close(false)
	return res, err
}

// relayInput reads the user's input from fd until it ends, acting on escape
// sequences at once and queueing the rest on keys for the guest. Typed
// input past the queue's bound is dropped, so that an escape sequence still
// works when the guest does not read its console; piped input waits
// instead, since a script's commands must all arrive. At EOF of piped
// input it just returns: what is queued still goes to the guest and the
// relay goes on showing output.
func relayInput(fd int, term bool, w *waker, stop <-chan struct{}, escape byte, keys *sink,
	ends chan relayEnd, help func(), powerOff func() error) {
	esc := newEscaper(escape)
	buf := make([]byte, 4096)
	for {
		n, err := readFD(fd, buf, w)
		if err != nil {
			switch {
			case errors.Is(err, errWoken):
			case !term && errors.Is(err, io.EOF):
			default:
				endOnce(ends, relayEnd{Detached, fmt.Errorf("read console input: %w", err)})
			}
			return
		}
		for p := buf[:n]; len(p) > 0; {
			fwd, act, used := esc.scan(p)
			p = p[used:]
			if !term && !keys.waitRoom(len(fwd), stop) {
				return
			}
			keys.offer(fwd)
			switch act {
			case actHelp:
				help()
			case actDetach:
				endOnce(ends, relayEnd{Detached, nil})
				return
			case actPowerOff:
				if err := powerOff(); err != nil {
					endOnce(ends, relayEnd{Detached, err})
				} else {
					endOnce(ends, relayEnd{PowerOff, nil})
				}
				return
			}
		}
	}
}

// forward hands queued input to deliver until the queue or stop ends it.
func forward(q *sink, stop <-chan struct{}, deliver func([]byte) error) {
	for {
		p, _, ok := q.next(stop)
		if !ok || deliver(p) != nil {
			return
		}
	}
}

func waitAtMost(done <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// sizeSource picks the terminal whose window size the guest should have.
func sizeSource(inFD, outFD int, inTerm bool) int {
	switch {
	case inTerm:
		return inFD
	case isTerminal(outFD):
		return outFD
	}
	return -1
}

// followSize applies fd's window size now and after every SIGWINCH until
// stop is closed.
func followSize(fd int, stop <-chan struct{}, wg *sync.WaitGroup, apply func(rows, cols uint16) error) {
	copySize := func() {
		if rows, cols, err := getWinsize(fd); err == nil && rows > 0 && cols > 0 {
			_ = apply(rows, cols)
		}
	}
	copySize()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, unix.SIGWINCH)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer signal.Stop(winch)
		for {
			select {
			case <-winch:
				copySize()
			case <-stop:
				return
			}
		}
	}()
}

// pumpOut writes what the sink queues to fd until the sink ends.
func pumpOut(s *sink, stop <-chan struct{}, fd int, w *waker) error {
	for {
		data, dropped, ok := s.next(stop)
		if !ok {
			return nil
		}
		if dropped > 0 {
			note := fmt.Sprintf("\r\n[subhost: %d bytes of console output dropped: terminal too slow]\r\n", dropped)
			if err := writeFD(fd, []byte(note), w); err != nil {
				return ignoreWoken(err)
			}
		}
		err := writeFD(fd, data, w)
		s.recycle(data)
		if err != nil {
			return ignoreWoken(err)
		}
	}
}

func ignoreWoken(err error) error {
	if errors.Is(err, errWoken) {
		return nil
	}
	return err
}

// relayFDs gets the descriptors of a relay's two ends and a waker to
// interrupt its blocking reads and writes.
func relayFDs(in, out *os.File) (inFD, outFD int, w *waker, err error) {
	if inFD, err = fileFD(in); err != nil {
		return
	}
	if outFD, err = fileFD(out); err != nil {
		return
	}
	w, err = newWaker()
	return
}
