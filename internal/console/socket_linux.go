package console

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// clientQueue is how much output may wait for a socket client; past
	// it output is dropped (the client is told how much).
	clientQueue = 1 << 20
	// clientInputQueue bounds a client's input waiting for a guest that
	// does not read its console; past it input is dropped.
	clientInputQueue = 1 << 20
	// byeTimeout bounds the last writes to clients when serving stops.
	byeTimeout = time.Second
)

// clientStuckTimeout: a client that accepts no output for this long is
// disconnected. A variable for tests.
var clientStuckTimeout = 10 * time.Second

// Serve listens on a unix socket at socketPath for `subhost console`
// clients, and returns once it listens. The socket is created 0600 (never
// wider, not even for an instant) in a directory that must be owned by this
// user and writable by no one else (it is created 0700 if missing). A stale
// socket left by a dead supervisor is replaced; a live one is an error.
// Serving stops, and the socket is removed, when ctx is done or the console
// is closed; Close waits for it.
func (c *Console) Serve(ctx context.Context, socketPath string) error {
	if err := checkSocketDir(filepath.Dir(socketPath)); err != nil {
		return err
	}
	if err := removeStale(socketPath); err != nil {
		return err
	}
	ln, err := listenPrivate(socketPath)
	if err != nil {
		return fmt.Errorf("console socket %q: %w", socketPath, err)
	}
	return c.serve(ctx, ln, socketPath, 0)
}

// helloWait bounds how long a new connection's hello is waited for.
const helloWait = time.Second

// moverWait bounds how long an adopted console waits, before it stops
// serving, for the clients told to reconnect to come back (a client on
// a busy host may take a while between frameMoved and its connect).
const moverWait = 2 * time.Second

// serve serves clients on ln, bound at path. movers is the number of
// clients expected back from a hand-over.
func (c *Console) serve(ctx context.Context, ln *net.UnixListener, path string, movers int) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	srv := &server{c: c, ln: ln, path: path, done: make(chan struct{}), moving: make(chan struct{}), clients: make(map[*net.UnixConn]*sink),
		movers: movers, moversBack: make(chan struct{}), acceptDone: make(chan struct{})}
	if movers == 0 {
		close(srv.moversBack)
	}
	c.srvs = append(c.srvs, srv)
	c.wg.Add(2)
	c.mu.Unlock()

	go func() {
		defer c.wg.Done()
		select {
		case <-ctx.Done():
		case <-c.closing:
		}
		srv.shutdown()
	}()
	go srv.acceptLoop()
	return nil
}

func checkSocketDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("console socket directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("console socket directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("console socket directory %q is not a directory", dir)
	case !ok || int(st.Uid) != os.Geteuid():
		return fmt.Errorf("console socket directory %q is not owned by uid %d", dir, os.Geteuid())
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("console socket directory %q is writable by others (mode %04o)", dir, fi.Mode().Perm())
	}
	return nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("console socket: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("console socket %q exists and is not a socket", path)
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("console socket %q is in use by a live console", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale console socket: %w", err)
	}
	return nil
}

// listenPrivate binds path with umask 0177, so the socket is 0600 from the
// start. The umask is process-wide unless the thread has its own fs_struct:
// the bind runs on a locked thread that unshared CLONE_FS, which the
// runtime then discards (the goroutine exits still locked), so no other
// goroutine's files are affected.
func listenPrivate(path string) (*net.UnixListener, error) {
	type result struct {
		ln  *net.UnixListener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread must die with this goroutine.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			ch <- result{nil, fmt.Errorf("unshare fs: %w", err)}
			return
		}
		unix.Umask(0o177)
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		ch <- result{ln, err}
	}()
	r := <-ch
	return r.ln, r.err
}

type server struct {
	c    *Console
	ln   *net.UnixListener
	path string
	done chan struct{}

	// moving is closed when the console is handed over: clients are
	// told to reconnect, and their input is taken up to their answer.
	moving chan struct{}
	conns  sync.WaitGroup // serveConn goroutines

	mu      sync.Mutex
	clients map[*net.UnixConn]*sink
	shut    bool
	// movers counts down the clients expected back from a hand-over;
	// moversBack is closed when none is left to wait for.
	movers     int
	moversBack chan struct{}
	acceptDone chan struct{} // closed when acceptLoop has returned
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// sayEnd tells a client the console ended, and hangs up.
func sayEnd(conn *net.UnixConn) {
	_ = conn.SetWriteDeadline(time.Now().Add(byeTimeout))
	_, _ = conn.Write(appendFrame(nil, frameEnd, nil))
	conn.Close()
}

// moverBack counts a client back from a hand-over.
func (srv *server) moverBack() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.movers > 0 {
		if srv.movers--; srv.movers == 0 {
			close(srv.moversBack)
		}
	}
}

// shutdown stops accepting and lets every client's writer flush what is
// queued, send the end frame and hang up, each within byeTimeout.
func (srv *server) shutdown() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.shut {
		return // moved out
	}
	srv.shut = true
	close(srv.done)
	srv.ln.Close()
	os.Remove(srv.path) // an adopted listener does not unlink itself
	for conn, s := range srv.clients {
		_ = conn.SetWriteDeadline(time.Now().Add(byeTimeout))
		s.close(true)
	}
}

// moveOut is shutdown for a hand-over: it stops accepting (the socket
// stays bound), flushes every client's output and tells it to reconnect,
// takes its input up to its answer, and waits for all that (bounded by
// byeTimeout per step). Connections that arrive meanwhile wait in the
// socket's backlog for the adopting process.
func (srv *server) moveOut() (clients int) {
	srv.mu.Lock()
	if srv.shut {
		srv.mu.Unlock()
		return 0
	}
	srv.shut = true
	close(srv.moving)
	srv.ln.SetUnlinkOnClose(false)
	srv.ln.Close()
	srv.mu.Unlock()
	<-srv.acceptDone // what it accepted meanwhile is among the clients
	srv.mu.Lock()
	// Those told to reconnect here and not back yet are in the backlog:
	// they are the next process's to expect too.
	clients = len(srv.clients) + srv.movers
	for conn, s := range srv.clients {
		_ = conn.SetWriteDeadline(time.Now().Add(byeTimeout))
		s.close(true)
	}
	srv.mu.Unlock()
	srv.conns.Wait()
	srv.mu.Lock()
	close(srv.done)
	srv.mu.Unlock()
	return clients
}

func (srv *server) acceptLoop() {
	defer srv.c.wg.Done()
	defer close(srv.acceptDone)
	for {
		conn, err := srv.ln.AcceptUnix()
		if err != nil {
			select {
			case <-srv.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off instead of spinning.
			select {
			case <-time.After(100 * time.Millisecond):
			case <-srv.done:
				return
			}
			continue
		}
		if !peerAllowed(conn) {
			conn.Close()
			continue
		}
		s := newSink(clientQueue)
		srv.mu.Lock()
		moving := srv.shut && isClosed(srv.moving)
		if srv.shut && !moving {
			srv.mu.Unlock()
			sayEnd(conn)
			continue
		}
		// While the console moves, a client accepted in the meantime is
		// served like the others: told to move, its input taken first.
		srv.clients[conn] = s
		srv.c.wg.Add(1)
		srv.conns.Add(1)
		srv.mu.Unlock()
		if moving {
			s.close(true)
		}
		go srv.serveConn(conn, s)
	}
}

// peerAllowed checks the client's uid: the socket's mode already keeps
// others out; this holds even if the directory's modes are loosened later.
func peerAllowed(conn *net.UnixConn) bool {
	rc, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return false
	}
	return cred.Uid == 0 || int(cred.Uid) == os.Geteuid()
}

func (srv *server) serveConn(conn *net.UnixConn, s *sink) {
	c := srv.c
	defer c.wg.Done()
	defer srv.conns.Done()
	defer func() {
		srv.mu.Lock()
		delete(srv.clients, conn)
		srv.mu.Unlock()
		conn.Close()
	}()
	br := bufio.NewReader(conn)
	var buf []byte
	// The client's hello says where its replay starts. A client without
	// one (an older subhost) gets the whole replay, and its first frame
	// is handled below.
	pos, first, firstPayload := uint64(0), byte(0), []byte(nil)
	_ = conn.SetReadDeadline(time.Now().Add(helloWait))
	typ, payload, err := readFrame(br, &buf)
	_ = conn.SetReadDeadline(time.Time{})
	switch {
	case err != nil && !errors.Is(err, os.ErrDeadlineExceeded):
		return
	case err == nil && typ == frameHello && len(payload) == 9:
		pos = binary.BigEndian.Uint64(payload)
		if payload[8] == 1 {
			srv.moverBack()
		}
	case err == nil:
		first, firstPayload = typ, append([]byte(nil), payload...)
	}
	if _, err := c.addViewerSince(s, true, pos, false); err != nil {
		sayEnd(conn)
		return
	}
	defer c.removeViewer(s)
	// A client admitted while the console moves got no replay: it has
	// seen what it said it had.
	sawAll := s.isOpen()

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		if !srv.writeOutput(conn, s) {
			conn.Close()
			return
		}
		select {
		case <-srv.moving:
			// The client answers frameMovedAck once it sends no more
			// here; the reader below takes its input up to that. It
			// reconnects saying how far it has seen.
			seen := pos
			if sawAll {
				c.mu.Lock()
				seen = c.ring.total
				c.mu.Unlock()
			}
			_ = conn.SetReadDeadline(time.Now().Add(byeTimeout))
			_, _ = conn.Write(appendFrame(nil, frameMoved, positionPayload(seen)))
		default:
			_, _ = conn.Write(appendFrame(nil, frameEnd, nil))
			conn.Close()
		}
	}()

	// Input goes through a queue so that this reader keeps reading
	// frames (a power-off request behind typed data, say) when the guest
	// does not read its console; past clientInputQueue it is dropped.
	keys := newSink(clientInputQueue)
	stop := make(chan struct{})
	forwardDone := make(chan struct{})
	go func() {
		defer close(forwardDone)
		forward(keys, stop, func(p []byte) error {
			select {
			case <-srv.done:
				return errWoken
			default:
				return c.writeInput(stop, p)
			}
		})
	}()

	moved := false
frames:
	for {
		var typ byte
		var payload []byte
		var err error
		if first != 0 {
			typ, payload, first = first, firstPayload, 0
		} else if typ, payload, err = readFrame(br, &buf); err != nil {
			break
		}
		switch typ {
		case frameData:
			keys.offer(payload)
		case frameResize:
			if len(payload) == 4 {
				rows := binary.BigEndian.Uint16(payload[0:])
				cols := binary.BigEndian.Uint16(payload[2:])
				if rows > 0 && cols > 0 {
					_ = c.SetSize(rows, cols)
				}
			}
		case framePowerOff:
			c.requestPowerOff()
		case frameMovedAck:
			moved = true
			break frames
		case frameHello:
			// late (after helloWait): its replay has been sent already
		default:
			break frames // not our protocol
		}
	}
	if moved {
		// Everything the client typed before it moved reaches the guest
		// before the console is handed over (bounded: a guest that reads
		// nothing does not hold the hand-over up).
		keys.close(true)
		waitAtMost(forwardDone, byeTimeout)
	}
	close(stop)
	<-forwardDone
	select {
	case <-srv.done:
		// Shutting down: the writer flushes, says goodbye and hangs up.
	default:
		c.removeViewer(s)
		s.close(false)
		conn.Close()
	}
	<-writerDone
}

// writeOutput sends the client its queued output until the sink ends. It
// reports whether the connection is still good (the sink was closed
// rather than the client failing).
func (srv *server) writeOutput(conn *net.UnixConn, s *sink) bool {
	var frames []byte
	for {
		data, dropped, ok := s.next(nil)
		if !ok {
			return true
		}
		frames = frames[:0]
		if dropped > 0 {
			note := fmt.Sprintf("\r\n[subhost: %d bytes of console output dropped: client too slow]\r\n", dropped)
			frames = appendFrame(frames, frameData, []byte(note))
		}
		frames = appendData(frames, data)
		s.recycle(data)
		// Frame by frame, each with its own deadline: a slow client that
		// makes progress stays, one that makes none for
		// clientStuckTimeout goes; when serving stops, byeTimeout.
		for len(frames) > 0 {
			n := min(len(frames), frameHeader+maxFrame)
			_ = conn.SetWriteDeadline(time.Now().Add(clientStuckTimeout))
			select {
			case <-srv.done:
				// shutdown closes done before it sets its deadline: one of
				// the two short deadlines is the one that holds.
				_ = conn.SetWriteDeadline(time.Now().Add(byeTimeout))
			default:
			}
			if _, err := conn.Write(frames[:n]); err != nil {
				return false
			}
			frames = frames[n:]
		}
	}
}

// redialWait bounds a client's reconnection after frameMoved: the socket
// stays bound, so the connection waits in its backlog until the process
// that adopted the console accepts it.
const redialWait = 10 * time.Second

// helloFrame is a client's first frame: the output position it has
// seen up to, and whether it comes back from a hand-over.
func helloFrame(pos uint64, moved bool) []byte {
	p := append(positionPayload(pos), 0)
	if moved {
		p[8] = 1
	}
	return appendFrame(nil, frameHello, p)
}

func redial(ctx context.Context, stop <-chan struct{}, socketPath string) (*net.UnixConn, error) {
	deadline := time.Now().Add(redialWait)
	for {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "unix", socketPath)
		if err == nil {
			return nc.(*net.UnixConn), nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-stop:
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Dial attaches to the console served at socketPath: the `subhost console
// NAME` side. It relays like Attach, with the same terminal handling and
// escape sequences; the detach sequence detaches this client only, and the
// power-off sequence asks the server, whose runner sees it on
// PowerOffRequests, and returns PowerOff. GuestGone means the server hung
// up in order: the console was closed or stopped serving.
func Dial(ctx context.Context, socketPath string, in, out *os.File, opts AttachOptions) (res AttachResult, err error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return Detached, fmt.Errorf("console: %w", err)
	}
	// conn changes when the server hands the console over (frameMoved).
	var connMu sync.Mutex // guards conn; frames from several goroutines
	conn := nc.(*net.UnixConn)
	if _, err := conn.Write(helloFrame(0, false)); err != nil {
		conn.Close()
		return Detached, fmt.Errorf("console: %w", err)
	}
	current := func() *net.UnixConn {
		connMu.Lock()
		defer connMu.Unlock()
		return conn
	}
	defer func() { current().Close() }()

	inFD, outFD, w, err := relayFDs(in, out)
	if err != nil {
		return Detached, err
	}
	defer w.close()

	term := isTerminal(inFD)
	if term {
		restore, err := makeRaw(inFD)
		if err != nil {
			return Detached, err
		}
		defer restore()
	}

	send := func(typ byte, p []byte) error {
		connMu.Lock()
		defer connMu.Unlock()
		var b []byte
		if typ == frameData {
			b = appendData(nil, p)
		} else {
			b = appendFrame(nil, typ, p)
		}
		_, err := conn.Write(b)
		return err
	}
	var outMu sync.Mutex // guest output and help text
	show := func(p []byte) error {
		outMu.Lock()
		defer outMu.Unlock()
		return writeFD(outFD, p, w)
	}

	stop := make(chan struct{})
	ends := make(chan relayEnd, 1)
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		w.wake()
		current().Close()
		wg.Wait()
	}()

	if sizeFD := sizeSource(inFD, outFD, term); sizeFD >= 0 {
		followSize(sizeFD, stop, &wg, func(rows, cols uint16) error {
			return send(frameResize, resizePayload(rows, cols))
		})
	}

	keys := newSink(keyQueue)
	wg.Add(3)
	go func() {
		defer wg.Done()
		br := bufio.NewReader(current())
		var buf []byte
		for {
			typ, payload, err := readFrame(br, &buf)
			switch {
			case errors.Is(err, net.ErrClosed):
				return // Dial is returning
			case errors.Is(err, io.EOF):
				endOnce(ends, relayEnd{Detached, errors.New("console connection closed by the server")})
				return
			case err != nil:
				endOnce(ends, relayEnd{Detached, fmt.Errorf("console connection: %w", err)})
				return
			}
			switch typ {
			case frameData:
				if err := show(payload); err != nil {
					if !errors.Is(err, errWoken) {
						endOnce(ends, relayEnd{Detached, fmt.Errorf("write console output: %w", err)})
					}
					return
				}
			case frameEnd:
				endOnce(ends, relayEnd{GuestGone, nil})
				return
			case frameMoved:
				// Nothing more goes to the old server after the ack: input
				// waits for the lock, then goes to the new connection.
				var seen uint64
				if len(payload) == 8 {
					seen = binary.BigEndian.Uint64(payload)
				}
				connMu.Lock()
				_, _ = conn.Write(appendFrame(nil, frameMovedAck, nil))
				nc, err := redial(ctx, stop, socketPath)
				if err == nil {
					_, err = nc.Write(helloFrame(seen, true))
					conn.Close()
					conn = nc
				}
				connMu.Unlock()
				if err != nil {
					endOnce(ends, relayEnd{Detached, fmt.Errorf("console reconnect: %w", err)})
					return
				}
				br = bufio.NewReader(nc)
			}
		}
	}()
	keysDone := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(keysDone)
		forward(keys, stop, func(p []byte) error { return send(frameData, p) })
	}()
	go func() {
		defer wg.Done()
		relayInput(inFD, term, w, stop, opts.EscapeChar, keys, ends,
			func() { _ = show(helpText(opts.EscapeChar)) },
			func() error {
				if err := send(framePowerOff, nil); err != nil {
					return fmt.Errorf("console power-off request: %w", err)
				}
				return nil
			})
	}()

	select {
	case e := <-ends:
		res, err = e.res, e.err
	case <-ctx.Done():
		res, err = Detached, ctx.Err()
	}
	if res != GuestGone {
		// What was typed before the end still goes to the server.
		keys.close(true)
		waitAtMost(keysDone, keyFlushTimeout)
	}
	return res, err
}
