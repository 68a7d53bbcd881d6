package main

import (
	"bytes"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// maxStdout bounds what a script's standard output may hold: a little
// JSON. The rest is read and dropped, so a chatty script never blocks.
const maxStdout = 1 << 20

// cappedBuffer keeps the first maxStdout bytes written to it.
type cappedBuffer struct {
	buf  bytes.Buffer
	over bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := maxStdout - c.buf.Len(); len(p) > room {
		c.buf.Write(p[:room])
		c.over = true
	} else {
		c.buf.Write(p)
	}
	return len(p), nil
}

// maxLine bounds one logged line of standard error; longer ones are cut.
const maxLine = 4096

// stderrLog logs each line a script writes to standard error and keeps
// the last non-empty one, which is the call's error message when the
// script fails.
type stderrLog struct {
	log     hclog.Logger
	mu      sync.Mutex
	partial []byte
	cut     bool // the current line was longer than maxLine
	last    string
}

func (s *stderrLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxLine - len(s.partial); len(chunk) > room {
			s.partial = append(s.partial, chunk[:room]...)
			s.cut = true
		} else {
			s.partial = append(s.partial, chunk...)
		}
		if i < 0 {
			break
		}
		s.emit()
		p = p[i+1:]
	}
	return n, nil
}

// Flush logs a last line that had no newline.
func (s *stderrLog) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.partial) > 0 || s.cut {
		s.emit()
	}
}

func (s *stderrLog) emit() {
	line := strings.TrimRight(string(s.partial), "\r \t")
	if s.cut {
		line += "..."
	}
	s.partial, s.cut = s.partial[:0], false
	if strings.TrimSpace(line) == "" {
		return
	}
	s.last = line
	s.log.Info(line)
}

// Last is the last non-empty line of standard error.
func (s *stderrLog) Last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}
