package stagetest

import (
	"bytes"
	"sync"
)

// SyncBuffer is a bytes.Buffer that a test may read while another
// goroutine writes it: the output of a logger whose lines arrive from a
// plugin's forwarded standard error, say.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
