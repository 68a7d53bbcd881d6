package console

import "strings"

// DefaultEscape is Ctrl-], the escape character telnet and many serial
// console tools use; ssh's "~" would collide with typing in a guest shell.
const DefaultEscape byte = 0x1d

// action is what an escape sequence asks the relay to do.
type action int

const (
	actNone action = iota
	actDetach
	actPowerOff
	actHelp
)

// escaper finds escape sequences in what the user types. It keeps state
// across reads, so a sequence split over two reads still counts.
type escaper struct {
	esc       byte // 0: no escape sequences
	lineStart bool // the last byte sent ended a line (or nothing was sent)
	armed     bool // the escape character was typed at the start of a line
}

func newEscaper(esc byte) *escaper { return &escaper{esc: esc, lineStart: true} }

// scan consumes p up to and including the first escape sequence that asks
// for an action. It returns the bytes to send to the guest, the action, and
// how many bytes of p it consumed; the caller calls again with the rest.
func (e *escaper) scan(p []byte) (fwd []byte, act action, n int) {
	fwd = make([]byte, 0, len(p)+1)
	for i, b := range p {
		if e.armed {
			e.armed = false
			switch b {
			case 'd':
				return fwd, actDetach, i + 1
			case 'q':
				return fwd, actPowerOff, i + 1
			case '?':
				return fwd, actHelp, i + 1
			case e.esc:
				fwd = append(fwd, b)
				e.lineStart = false
				continue
			default:
				// Not a sequence: the escape character goes through, and
				// so does b, handled as any other byte.
				fwd = append(fwd, e.esc)
			}
		} else if e.esc != 0 && e.lineStart && b == e.esc {
			e.armed = true
			continue
		}
		fwd = append(fwd, b)
		e.lineStart = b == '\r' || b == '\n'
	}
	return fwd, actNone, len(p)
}

// caret shows a control character the way terminals echo it (^]).
func caret(b byte) string {
	switch {
	case b < 0x20:
		return "^" + string(rune(b+'@'))
	case b == 0x7f:
		return "^?"
	}
	return string(rune(b))
}

// helpText lists the escape sequences; lines end in CRLF because the
// terminal it is written to is in raw mode.
func helpText(esc byte) []byte {
	e := caret(esc)
	lines := []string{
		"",
		"Supported escape sequences (at the start of a line):",
		" " + e + "d  detach (the guest keeps running)",
		" " + e + "q  power the guest off",
		" " + e + "?  this help",
		" " + e + e + " send " + e + " to the guest",
		"",
	}
	return []byte(strings.Join(lines, "\r\n"))
}
