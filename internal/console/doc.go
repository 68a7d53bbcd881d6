// Package console is the plumbing of a guest's console: a pty pair the
// runner owns, one reader of its master fanned out to a size-capped log, the
// foreground terminal and clients of a root-only unix socket, and the
// escape sequence that detaches or powers off.
//
// Life of a console, as the supervisor (package supervisor) uses it:
//
//	c, err := console.New()               // pty pair, 24x80, slave held open
//	c.LogTo("/var/log/subhost/NAME.log", 4<<20)
//	// the init stage opens c.SlavePath() (Request.Console) by path and
//	// binds it on the guest's /dev/console; once the guest's PID 1 holds it:
//	c.CloseSlave()
//	c.Serve(ctx, "/run/subhost/NAME/console.sock")
//	// reboot: reap the old PID 1, wait for c.Done(), c.Rearm(), launch,
//	// c.CloseSlave()
//	c.Close()
//
// and as a foreground `subhost run` or `subhost console` attaches to it:
//
//	res, err := console.Dial(ctx, "/run/subhost/NAME/console.sock", os.Stdin, os.Stdout,
//		console.AttachOptions{EscapeChar: console.DefaultEscape})
//
// (Attach relays a console to a terminal in the same process; the tests
// use it.)
//
// The runner must not call CloseSlave before the guest holds the slave: once
// no process has it open the master reports EIO, and that is how the console
// learns the guest session ended (GuestGone). Guest processes that hang up
// the console (vhangup) while another process still holds it do not end the
// session, so subhost-init should keep /dev/console open for its lifetime.
//
// Escape sequence (like ssh's "~."), recognised only at the start of a line,
// with the default escape character Ctrl-] (0x1d):
//
//	Ctrl-] d       detach: the guest keeps running
//	Ctrl-] q       power the guest off (Attach returns PowerOff; a socket
//	               client's request arrives on PowerOffRequests)
//	Ctrl-] ?       print this list
//	Ctrl-] Ctrl-]  send one Ctrl-] to the guest
//
// Any other character after the escape character sends both. AttachOptions
// with EscapeChar 0 turns escapes off.
//
// Foreground relay (Attach, and Dial on the client side): when the input is
// a terminal it is put in raw mode (restored on every return, including a
// panic unwinding through Attach; a caller that handles SIGINT/SIGTERM
// cancels ctx), its window size is copied to the pty and SIGWINCH followed.
// When it is not a terminal (a script piping commands into `control start`)
// the data is copied as is, and at EOF the relay keeps showing output until
// the guest session ends: the pty is never closed or sent EOF, so the
// guest's shell reads its `exit` from the data itself.
//
// Nothing a viewer does can stall the guest: the master is read by one
// goroutine that never blocks on a viewer. Each viewer (the foreground
// terminal, every socket client) has a 1 MiB queue; output past it is
// dropped and the viewer is shown a note saying how much. A socket client
// that accepts no output for 10 s is disconnected. A newly attached socket
// client first gets the last ReplayBytes of output.
//
// Input is queued too, so that escape sequences and a client's power-off
// request work while a hung guest reads nothing: typed input past 64 KiB is
// dropped, piped input waits instead (a script's commands must all
// arrive), and the server drops a socket client's input past 1 MiB.
//
// Socket protocol (both directions): frames of one type byte, a big-endian
// uint32 payload length and the payload (at most 64 KiB). A client's first
// frame is 'h' hello (the output position it has seen up to, big-endian
// uint64, 0 when new, and a byte 1 when it comes back from a hand-over):
// its replay starts after that position. Types: 'd' data,
// 'w' window size (client to server: rows, cols as big-endian uint16),
// 'p' power-off request (client to server), 'M' the answer to 'm' (client to server: nothing more follows on this connection), 'e' end (server to client: the
// console was closed or stopped serving; Dial returns GuestGone), 'm' moved
// (server to client, with the position the client has seen: the console
// was handed over to another process, see HandOver; Dial reconnects to the
// same socket, which stays bound). A
// connection that closes without 'e' or 'm' is an error for the client.
//
// HandOver and Adopt pass a running console to another process across an
// exec (the supervisor becoming the small subhost-monitor and back): the
// pty master and the bound socket survive, queued output reaches the
// clients first, and the clients reconnect; the replay buffer starts
// afresh in the new process.
//
// creack/pty's Open and Setsize call (*os.File).Fd, which puts the master in
// blocking mode, so a blocked Read could not be interrupted by Close; the pty
// is therefore opened here with golang.org/x/sys/unix and kept in Go's
// poller. Raw mode is x/term's MakeRaw written against x/sys/unix, to avoid a
// new dependency.
package console
