package console

import "sync"

// ReplayBytes is how much recent output a newly attached socket client
// (or an Attach with Replay) sees first: a screenful or two of context.
const ReplayBytes = 16 << 10

// ring keeps the last max bytes written to it, and counts every byte
// ever written (total: the console's output position).
type ring struct {
	b     []byte
	max   int
	total uint64
}

// since returns what the ring holds of the output after position pos.
func (r *ring) since(pos uint64) []byte {
	if pos >= r.total {
		return nil
	}
	if n := r.total - pos; n < uint64(len(r.b)) {
		return r.b[uint64(len(r.b))-n:]
	}
	return r.b
}

func (r *ring) write(p []byte) {
	r.total += uint64(len(p))
	if len(p) >= r.max {
		r.b = append(r.b[:0], p[len(p)-r.max:]...)
		return
	}
	if over := len(r.b) + len(p) - r.max; over > 0 {
		r.b = append(r.b[:0], r.b[over:]...)
	}
	r.b = append(r.b, p...)
}

// A sink is a bounded byte queue between a producer that must not block
// and one consumer goroutine: one viewer's console output (the pty reader
// appends, the viewer's writer drains), or one source's input on its way
// to the guest (so that escape sequences and control frames are handled
// even while a guest does not read its console).
type sink struct {
	mu      sync.Mutex
	buf     []byte
	spare   []byte
	limit   int
	dropped int64
	state   sinkState
	wake    chan struct{} // data queued, or closed
	room    chan struct{} // data taken
}

type sinkState int

const (
	sinkOpen     sinkState = iota
	sinkDraining           // no more input; the writer empties the queue
	sinkAborted            // the writer stops now
)

func newSink(limit int) *sink {
	return &sink{limit: limit, wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// offer queues a copy of p; it reports false when p did not fit, and
// counts it as dropped.
func (s *sink) offer(p []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != sinkOpen {
		return true
	}
	if len(s.buf)+len(p) > s.limit {
		s.dropped += int64(len(p))
		return false
	}
	s.buf = append(s.buf, p...)
	s.signal()
	return true
}

func (s *sink) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// next waits for queued output and hands it over with the count of bytes
// dropped since the last call. ok is false once the sink is closed (and,
// when draining, empty) or stop is closed. The caller returns data with
// recycle once written.
func (s *sink) next(stop <-chan struct{}) (data []byte, dropped int64, ok bool) {
	for {
		s.mu.Lock()
		if s.state == sinkAborted {
			s.mu.Unlock()
			return nil, 0, false
		}
		if len(s.buf) > 0 || s.dropped > 0 {
			data, dropped = s.buf, s.dropped
			s.buf, s.spare, s.dropped = s.spare[:0], nil, 0
			s.mu.Unlock()
			select {
			case s.room <- struct{}{}:
			default:
			}
			return data, dropped, true
		}
		if s.state == sinkDraining {
			s.mu.Unlock()
			return nil, 0, false
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-stop:
			return nil, 0, false
		}
	}
}

// waitRoom waits until n more bytes fit (or the sink is closed): for a
// producer that may block, such as a script's piped input.
func (s *sink) waitRoom(n int, stop <-chan struct{}) bool {
	for {
		s.mu.Lock()
		fits := s.state != sinkOpen || len(s.buf)+n <= s.limit
		s.mu.Unlock()
		if fits {
			return true
		}
		select {
		case <-s.room:
		case <-stop:
			return false
		}
	}
}

func (s *sink) recycle(b []byte) {
	s.mu.Lock()
	// Keep small buffers only: a burst must not pin its peak memory.
	if s.spare == nil && cap(b) <= 64<<10 {
		s.spare = b[:0]
	}
	s.mu.Unlock()
}

// close ends the sink: drain lets the writer finish what is queued.
// isOpen reports whether the sink still takes data.
func (s *sink) isOpen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == sinkOpen
}

func (s *sink) close(drain bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == sinkAborted {
		return
	}
	if drain {
		s.state = sinkDraining
	} else {
		s.state = sinkAborted
		s.buf = nil
	}
	s.signal()
}
