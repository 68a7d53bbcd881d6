package console

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Handover is a console in transit between two processes: descriptors
// that stay open across an exec (no close-on-exec), and what the adopting
// process needs to carry on.
type Handover struct {
	Master    int    `json:"master"`
	SlavePath string `json:"slave_path"`
	// Listener is the bound console socket (at Socket), or -1.
	Listener int    `json:"listener"`
	Socket   string `json:"socket,omitempty"`
	LogPath  string `json:"log_path,omitempty"`
	LogMax   int64  `json:"log_max,omitempty"`
	// Clients is how many clients were told to reconnect: the adopting
	// console waits (briefly) for them before it stops serving.
	Clients int `json:"clients,omitempty"`
	// Replay is the replay buffer, ending at output position Position.
	Replay   []byte `json:"replay,omitempty"`
	Position uint64 `json:"position,omitempty"`
}

// HandOver stops the console for another process to adopt (Adopt) after
// this one executes it, without the guest noticing: the pty master and the
// socket stay open in descriptors without close-on-exec, output already
// read reaches every client, and each client is told to reconnect. The
// Console is closed afterwards. It refuses while the slave is held (the
// guest's session is not set up yet) or a foreground viewer is attached.
func (c *Console) HandOver() (Handover, error) {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return Handover{}, ErrClosed
	case c.slave != nil:
		c.mu.Unlock()
		return Handover{}, errors.New("console hand-over: the console still holds its slave")
	case c.fg != nil:
		c.mu.Unlock()
		return Handover{}, errors.New("console hand-over: a viewer is attached in the foreground")
	case len(c.srvs) > 1:
		c.mu.Unlock()
		return Handover{}, errors.New("console hand-over: served on more than one socket")
	}
	h := Handover{Master: -1, Listener: -1, SlavePath: c.slavePath, LogPath: c.logAt, LogMax: c.logMax}
	var err error
	if len(c.srvs) == 1 {
		h.Socket = c.srvs[0].path
		if h.Listener, err = inheritableDup(c.srvs[0].ln); err != nil {
			c.mu.Unlock()
			return Handover{}, fmt.Errorf("console hand-over: socket: %w", err)
		}
	}
	if h.Master, err = inheritableDup(c.master); err != nil {
		c.mu.Unlock()
		closeFD(h.Listener)
		return Handover{}, fmt.Errorf("console hand-over: pty: %w", err)
	}
	c.moving = true
	servers := c.srvs
	c.mu.Unlock()
	// The reader stops at this deadline (not at EIO, which would end the
	// guest's session). Each client then gets the output read so far and
	// frameMoved, and its input up to its answer goes to the guest,
	// before Close stops the rest.
	close(c.stopRead)
	c.master.SetReadDeadline(time.Now())
	<-c.readDone
	for _, srv := range servers {
		h.Clients += srv.moveOut()
	}
	c.mu.Lock()
	h.Replay, h.Position = append([]byte(nil), c.ring.b...), c.ring.total
	c.mu.Unlock()
	c.Close()
	return h, nil
}

func (c *Console) isMoving() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.moving
}

// Adopt takes over a console handed over by HandOver (in this process,
// after an exec): it reads the master again, logs to the same file and
// serves the same socket until ctx is done or the console is closed.
func Adopt(ctx context.Context, h Handover) (*Console, error) {
	unix.CloseOnExec(h.Master)
	master := os.NewFile(uintptr(h.Master), "/dev/ptmx")
	if master == nil {
		closeFD(h.Listener)
		return nil, fmt.Errorf("adopt console: bad descriptor %d", h.Master)
	}
	c := makeConsole(master, nil, h.SlavePath)
	c.ring.b, c.ring.total = append(c.ring.b, h.Replay...), h.Position
	if h.LogPath != "" {
		if err := c.LogTo(h.LogPath, h.LogMax); err != nil {
			closeFD(h.Listener)
			master.Close()
			return nil, err
		}
	}
	c.start()
	if h.Listener >= 0 {
		f := os.NewFile(uintptr(h.Listener), h.Socket)
		fl, err := net.FileListener(f)
		f.Close()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("adopt console socket %q: %w", h.Socket, err)
		}
		ln, ok := fl.(*net.UnixListener)
		if !ok {
			fl.Close()
			c.Close()
			return nil, fmt.Errorf("adopt console socket %q: not a unix socket", h.Socket)
		}
		if err := c.serve(ctx, ln, h.Socket, h.Clients); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// inheritableDup duplicates the descriptor of f without close-on-exec.
// Through SyscallConn, unlike Fd, f stays non-blocking, and so does the
// duplicate (the flag belongs to the open file they share).
func inheritableDup(f interface {
	SyscallConn() (syscall.RawConn, error)
}) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd, dupErr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { nfd, dupErr = unix.Dup(int(fd)) }); err != nil {
		return -1, err
	}
	return nfd, dupErr
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}
