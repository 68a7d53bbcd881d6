package console

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by operations on a closed Console.
var ErrClosed = errors.New("console closed")

// Console is a guest console: a pty pair whose master the runner keeps.
type Console struct {
	master    *os.File
	slavePath string

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup // reader, input writer, socket servers
	input     chan []byte    // to the input writer
	rearm     chan struct{}  // wakes the reader after Rearm
	powerOff  chan struct{}
	firstOut  chan time.Time // the time of the first output, sent once

	mu      sync.Mutex
	slave   *os.File // held until CloseSlave
	sess    *session
	ring    ring
	log     *rotLog
	logErr  error
	fg      *sink
	clients map[*sink]struct{}
	closed  bool
	srvs    []*server // the socket servers
	// moving: HandOver is stopping the console for another process to
	// adopt; the reader stops at its deadline and clients are told to
	// reconnect.
	moving   bool
	stopRead chan struct{} // closed by HandOver: the reader stops
	readDone chan struct{} // closed when the reader has stopped
	logAt    string        // the log's path and cap, for HandOver
	logMax   int64
}

// A session is one run of the guest on the console: it ends when the last
// holder of the slave closes it.
type session struct{ gone chan struct{} }

func newSession() *session { return &session{gone: make(chan struct{})} }

// New opens a pty pair sized 24x80 (a detached guest's programs would see
// 0x0 otherwise) and starts reading its master. The Console holds the slave
// open until CloseSlave.
func New() (*Console, error) {
	master, slave, path, err := openPTY()
	if err != nil {
		return nil, fmt.Errorf("new console: %w", err)
	}
	c := makeConsole(master, slave, path)
	if err := c.SetSize(24, 80); err != nil {
		master.Close()
		slave.Close()
		return nil, fmt.Errorf("new console: %w", err)
	}
	c.start()
	return c, nil
}

func makeConsole(master, slave *os.File, slavePath string) *Console {
	return &Console{
		master:    master,
		slavePath: slavePath,
		closing:   make(chan struct{}),
		input:     make(chan []byte),
		rearm:     make(chan struct{}, 1),
		powerOff:  make(chan struct{}, 1),
		firstOut:  make(chan time.Time, 1),
		slave:     slave,
		sess:      newSession(),
		ring:      ring{max: ReplayBytes},
		clients:   make(map[*sink]struct{}),
		stopRead:  make(chan struct{}),
		readDone:  make(chan struct{}),
	}
}

func (c *Console) start() {
	c.wg.Add(2)
	go c.readLoop()
	go c.inputLoop()
}

// FirstOutput delivers, once, the time the console first had output to
// read: when the guest first wrote to it (`subhost run --timings`).
func (c *Console) FirstOutput() <-chan time.Time { return c.firstOut }

// SlavePath is the pty slave's path on the host, such as /dev/pts/7: the
// init stage opens it and binds it on the guest's /dev/console.
func (c *Console) SlavePath() string { return c.slavePath }

// CloseSlave drops the Console's own slave descriptor. Call it once the
// guest holds the slave, so that the guest's exit is seen as EIO on the
// master (GuestGone).
func (c *Console) CloseSlave() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.slave != nil {
		c.slave.Close()
		c.slave = nil
	}
}

// Rearm readies the console for the next guest session (a reboot) after the
// previous one ended: it opens and holds the slave again and resumes
// reading. The slave path does not change. Socket clients stay connected.
//
// Call it only after the previous guest's PID 1 has been reaped: a session
// leader that had the console as controlling terminal hangs the tty up as
// its very last step of exiting, after it closed its descriptors (which is
// what ended the session); a guest started before that would find its
// console hung up.
func (c *Console) Rearm() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	select {
	case <-c.sess.gone:
	default:
		return errors.New("console rearm: the guest session has not ended")
	}
	if c.slave == nil {
		s, err := openSlave(c.master, c.slavePath)
		if err != nil {
			return fmt.Errorf("console rearm: %w", err)
		}
		c.slave = s
	}
	c.sess = newSession()
	select {
	case c.rearm <- struct{}{}:
	default:
	}
	return nil
}

// Done is closed when the current guest session ends (the last holder of
// the slave closed it) or the console is closed.
func (c *Console) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.gone
}

// SetSize sets the pty's window size; the guest's foreground process group
// gets SIGWINCH.
func (c *Console) SetSize(rows, cols uint16) error {
	var ioErr error
	err := control(c.master, func(fd int) {
		ioErr = unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	if err == nil {
		err = ioErr
	}
	if err != nil {
		return fmt.Errorf("console window size: %w", err)
	}
	return nil
}

// Size returns the pty's window size.
func (c *Console) Size() (rows, cols uint16, err error) {
	var ioErr error
	err = control(c.master, func(fd int) { rows, cols, ioErr = getWinsize(fd) })
	if err == nil {
		err = ioErr
	}
	return rows, cols, err
}

// PowerOffRequests delivers the power-off requests of socket clients
// (Ctrl-] q in `subhost console`). Requests that arrive while one is
// pending are merged.
func (c *Console) PowerOffRequests() <-chan struct{} { return c.powerOff }

// RequestPowerOff queues a power-off request, as a client's Ctrl-] q
// does.
func (c *Console) RequestPowerOff() { c.requestPowerOff() }

func (c *Console) requestPowerOff() {
	select {
	case c.powerOff <- struct{}{}:
	default:
	}
}

// LogTo copies all further console output to the file at path, created
// 0600 (its directory 0700 if it has to be made), capped at maxBytes and
// rotated once to path+".1". It replaces any previous log; an empty path
// stops logging. After a write error the log stops; LogErr reports it.
func (c *Console) LogTo(path string, maxBytes int64) error {
	var l *rotLog
	if path != "" {
		var err error
		if l, err = openLog(path, maxBytes); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		if l != nil {
			l.close()
		}
		return ErrClosed
	}
	if c.log != nil {
		c.log.close()
	}
	c.log, c.logErr = l, nil
	c.logAt, c.logMax = path, maxBytes
	return nil
}

// LogErr is the write error that stopped the log, if any.
func (c *Console) LogErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logErr
}

// Close closes the pty (the guest, if still running, loses its console),
// the log and every socket server and client, and waits for the console's
// goroutines. An Attach in progress returns GuestGone.
func (c *Console) Close() error {
	c.closeOnce.Do(func() {
		// Clients told to reconnect here by a hand-over get the end of
		// the output too (see moverWait).
		c.mu.Lock()
		servers := c.srvs
		c.mu.Unlock()
		for _, srv := range servers {
			waitAtMost(srv.moversBack, moverWait)
		}
		c.mu.Lock()
		c.closed = true
		if c.slave != nil {
			c.slave.Close()
			c.slave = nil
		}
		c.mu.Unlock()
		close(c.closing)
		c.master.Close()
	})
	c.wg.Wait()
	c.mu.Lock()
	if c.log != nil {
		c.log.close()
		c.log = nil
	}
	c.mu.Unlock()
	return nil
}

// readLoop is the master's only reader. It never waits for a viewer.
func (c *Console) readLoop() {
	defer c.wg.Done()
	defer close(c.readDone)
	buf := make([]byte, 32<<10)
	first := c.firstOut
	for {
		n, err := c.master.Read(buf)
		if n > 0 {
			if first != nil {
				first <- time.Now()
				first = nil
			}
			c.dispatch(buf[:n])
		}
		if err == nil {
			continue
		}
		// EIO (or EOF): no process holds the slave any more. Anything
		// else is unexpected but ends the session the same way rather than
		// spinning on it; the runner learns the truth from the guest's
		// PID 1 anyway. HandOver stops the reader with a deadline.
		if errors.Is(err, os.ErrDeadlineExceeded) && c.isMoving() {
			return
		}
		c.endSession()
		if errors.Is(err, os.ErrClosed) {
			return
		}
		select {
		case <-c.rearm:
		case <-c.closing:
			return
		case <-c.stopRead:
			return
		}
	}
}

func (c *Console) endSession() {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.sess.gone:
	default:
		close(c.sess.gone)
	}
}

func (c *Console) dispatch(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ring.write(p)
	if c.log != nil {
		if err := c.log.write(p); err != nil {
			c.log.close()
			c.log, c.logErr = nil, err
		}
	}
	if c.fg != nil {
		c.fg.offer(p)
	}
	for s := range c.clients {
		s.offer(p) // a full queue drops and counts
	}
}

// addViewer registers a sink for output, first queueing the replay buffer
// when asked; under the lock, so the viewer sees no gap and no repeat.
func (c *Console) addViewer(s *sink, replay, foreground bool) (*session, error) {
	return c.addViewerSince(s, replay, 0, foreground)
}

// addViewerSince is addViewer whose replay starts after output position
// pos (a client that reconnects after a hand-over has seen up to there).
func (c *Console) addViewerSince(s *sink, replay bool, pos uint64, foreground bool) (*session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if foreground {
		if c.fg != nil {
			return nil, errors.New("console is already attached in the foreground")
		}
		c.fg = s
	} else {
		c.clients[s] = struct{}{}
	}
	if replay {
		s.offer(c.ring.since(pos))
	}
	return c.sess, nil
}

func (c *Console) removeViewer(s *sink) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fg == s {
		c.fg = nil
	}
	delete(c.clients, s)
}

// inputLoop serialises all input to the master. A guest that does not read
// its console blocks this goroutine (and so the viewers that type), never
// the output side.
func (c *Console) inputLoop() {
	defer c.wg.Done()
	for {
		select {
		case p := <-c.input:
			if _, err := c.master.Write(p); errors.Is(err, os.ErrClosed) {
				return
			}
		case <-c.closing:
			return
		}
	}
}

// writeInput hands p (which it then owns) to the input writer.
func (c *Console) writeInput(stop <-chan struct{}, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	select {
	case c.input <- p:
		return nil
	case <-stop:
		return errWoken
	case <-c.closing:
		return ErrClosed
	}
}
