package initctl

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// Magic starts every sysvinit request; Size is the size of one.
const (
	Magic = 0x03091969
	Size  = 384
)

// Request commands (initreq.h INIT_CMD_*).
const (
	CmdStart         = 0
	CmdRunlevel      = 1
	CmdPowerFail     = 2
	CmdPowerFailNow  = 3
	CmdPowerOK       = 4
	CmdBSD           = 5
	CmdSetenv        = 6
	CmdUnsetenv      = 7
	CmdChangeConsole = 12345
)

// Request is one decoded struct init_request.
type Request struct {
	Cmd       int32
	Runlevel  int32
	Sleeptime int32
	Data      [Size - 16]byte
}

// Marshal encodes r as sysvinit writes it, in native byte order.
func (r Request) Marshal() []byte {
	b := make([]byte, Size)
	binary.NativeEndian.PutUint32(b[0:], Magic)
	binary.NativeEndian.PutUint32(b[4:], uint32(r.Cmd))
	binary.NativeEndian.PutUint32(b[8:], uint32(r.Runlevel))
	binary.NativeEndian.PutUint32(b[12:], uint32(r.Sleeptime))
	copy(b[16:], r.Data[:])
	return b
}

// Parse decodes one request from the start of b.
func Parse(b []byte) (Request, error) {
	var r Request
	if len(b) < Size {
		return r, fmt.Errorf("short request (%d bytes, want %d)", len(b), Size)
	}
	if m := binary.NativeEndian.Uint32(b); m != Magic {
		return r, fmt.Errorf("bad magic %#08x", m)
	}
	r.Cmd = int32(binary.NativeEndian.Uint32(b[4:]))
	r.Runlevel = int32(binary.NativeEndian.Uint32(b[8:]))
	r.Sleeptime = int32(binary.NativeEndian.Uint32(b[12:]))
	copy(r.Data[:], b[16:Size])
	return r, nil
}

// Action is what a request asks of a subhost.
type Action int

const (
	// Ignore: a valid request that does not stop the guest (telinit 2,
	// the SETENV that shutdown sends first, a power-fail notice).
	Ignore Action = iota
	// PowerOff: runlevel 0, or anything unparsable.
	PowerOff
	// Reboot: runlevel 6.
	Reboot
)

func (a Action) String() string {
	switch a {
	case PowerOff:
		return "power off"
	case Reboot:
		return "reboot"
	default:
		return "ignore"
	}
}

// Next decides the first request in buf. It returns the action, a few
// words saying why (for the console), and the bytes after that request.
// Unparsable input consumes the whole buffer: there is no way to find
// the next request boundary in garbage, and it powers off anyway.
func Next(buf []byte) (act Action, why string, rest []byte) {
	r, err := Parse(buf)
	if err != nil {
		return PowerOff, err.Error(), nil
	}
	rest = buf[Size:]
	switch r.Cmd {
	case CmdRunlevel:
		rl := r.Runlevel
		switch {
		case rl == '0':
			return PowerOff, "runlevel 0", rest
		case rl == '6':
			return Reboot, "runlevel 6", rest
		case rl >= '1' && rl <= '9', strings.ContainsRune("SsQqUuabcABC", rl):
			return Ignore, fmt.Sprintf("runlevel %c", rl), rest
		default:
			return PowerOff, fmt.Sprintf("unknown runlevel %#x", rl), nil
		}
	case CmdSetenv, CmdUnsetenv:
		name := "SETENV"
		if r.Cmd == CmdUnsetenv {
			name = "UNSETENV"
		}
		return Ignore, fmt.Sprintf("%s %q", name, firstString(r.Data[:])), rest
	case CmdStart:
		return Ignore, "START", rest
	case CmdPowerFail, CmdPowerFailNow, CmdPowerOK:
		return Ignore, fmt.Sprintf("power status %d", r.Cmd), rest
	case CmdBSD:
		return Ignore, "BSD", rest
	case CmdChangeConsole:
		return Ignore, "CHANGECONS", rest
	default:
		return PowerOff, fmt.Sprintf("unknown command %d", r.Cmd), nil
	}
}

// firstString is the first NUL-terminated string of data, cut short so
// that a console note stays one short line.
func firstString(data []byte) string {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		data = data[:i]
	}
	if len(data) > 64 {
		data = data[:64]
	}
	return string(data)
}
