package console

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Frame types of the console socket; see the package documentation.
const (
	frameData     byte = 'd'
	frameResize   byte = 'w'
	framePowerOff byte = 'p'
	frameEnd      byte = 'e'
	// frameMoved: the console is handed over to another process (the
	// supervisor executing itself anew); the client reconnects to the
	// same socket, which stays bound meanwhile.
	frameMoved byte = 'm'
	// frameMovedAck: the client's answer to frameMoved, after which it
	// sends nothing more on that connection.
	frameMovedAck byte = 'M'
	// frameHello: a client's first frame, with the output position
	// (big-endian uint64) it has seen up to: 0 when new, the position
	// frameMoved gave it when it reconnects. Replay starts after it.
	frameHello byte = 'h'
)

func positionPayload(pos uint64) []byte {
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], pos)
	return p[:]
}

const (
	frameHeader = 5
	maxFrame    = 64 << 10
)

// appendFrame appends one frame to b, so a frame always goes out in a
// single Write and writers sharing a connection never interleave.
func appendFrame(b []byte, typ byte, payload []byte) []byte {
	b = append(b, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(len(payload)))
	return append(b, payload...)
}

// appendData appends p as data frames of at most maxFrame bytes each.
func appendData(b, p []byte) []byte {
	for len(p) > 0 {
		n := min(len(p), maxFrame)
		b = appendFrame(b, frameData, p[:n])
		p = p[n:]
	}
	return b
}

func resizePayload(rows, cols uint16) []byte {
	var p [4]byte
	binary.BigEndian.PutUint16(p[0:], rows)
	binary.BigEndian.PutUint16(p[2:], cols)
	return p[:]
}

// readFrame reads one frame. The payload is valid until the next call.
func readFrame(r *bufio.Reader, buf *[]byte) (typ byte, payload []byte, err error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("console frame %q of %d bytes exceeds %d", h[0], n, maxFrame)
	}
	if cap(*buf) < int(n) {
		*buf = make([]byte, n)
	}
	payload = (*buf)[:n]
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return h[0], payload, nil
}
