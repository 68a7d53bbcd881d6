package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/settings"
)

// PendingLog is a new boot's supervisor log until the boot is about to
// change the host: written to memory until Open, so that input the
// stages refuse (a bad config, a plugin that fails its checks) leaves no
// log file behind, nor a line in the log of the subhost already running
// under the name. Open, right before the first stage's Up, makes the
// file, writes what was held and turns this process's standard output
// and error to it; from then on the log is the file.
type PendingLog struct {
	mu      sync.Mutex
	held    bytes.Buffer
	dropped bool     // held reached maxHeld; what followed is lost
	file    *os.File // once open
	// abandoned: the boot ended before Open; writes go to after (nil:
	// nowhere).
	abandoned bool
	after     io.Writer
}

// maxHeld bounds what a PendingLog holds: a boot logs a few lines before
// its first Up, thousands only at trace level with many stages.
const maxHeld = 1 << 20

// NewPendingLog returns an empty PendingLog.
func NewPendingLog() *PendingLog { return &PendingLog{} }

// Write holds p until Open, then appends it to the log.
func (l *PendingLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.file != nil:
		return l.file.Write(p)
	case l.abandoned && l.after != nil:
		return l.after.Write(p)
	case l.abandoned:
		return len(p), nil
	}
	if l.held.Len()+len(p) > maxHeld {
		l.dropped = true
		return len(p), nil
	}
	return l.held.Write(p)
}

// Open makes (or appends to) the supervisor's log of subhost name,
// writes what was held, and makes it this process's standard output and
// error: a panic's trace lands there too. It returns the log's path.
func (l *PendingLog) Open(s *settings.Settings, name string) (string, error) {
	f, err := openLog(s, name)
	if err != nil {
		return "", err
	}
	if err := l.flushTo(f); err != nil {
		f.Close()
		return "", fmt.Errorf("supervisor log: %w", err)
	}
	for _, fd := range []int{1, 2} {
		if err := unix.Dup3(int(f.Fd()), fd, 0); err != nil {
			return "", fmt.Errorf("supervisor log: %w", err)
		}
	}
	return f.Name(), nil
}

// flushTo writes what was held to f, which takes every write from then
// on.
func (l *PendingLog) flushTo(f *os.File) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dropped {
		fmt.Fprintf(&l.held, "(what was logged past the first %d bytes before the boot began is lost)\n", maxHeld)
	}
	if _, err := f.Write(l.held.Bytes()); err != nil {
		return err
	}
	l.held = bytes.Buffer{}
	l.file = f
	return nil
}

// IsOpen reports whether Open made the log.
func (l *PendingLog) IsOpen() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.file != nil
}

// Abandon, for a boot that ended before Open, writes what was held, and
// what is logged from now on, to w (standard error, when the user asked
// for detail), or drops it (w nil).
func (l *PendingLog) Abandon(w io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil || l.abandoned {
		return
	}
	if w != nil {
		w.Write(l.held.Bytes())
	}
	l.held = bytes.Buffer{}
	l.abandoned, l.after = true, w
}
