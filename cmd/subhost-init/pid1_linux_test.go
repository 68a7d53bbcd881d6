package main

import (
	"testing"
	"time"
)

// The whole shutdown fits in the timeout the host also waits: rc 0 gets
// what is left once the two graces (SIGTERM to all, then SIGKILL) and a
// margin are kept, and a step that comes late is cut short, not given its
// full grace past the deadline.
func TestShutdownFitsTheTimeout(t *testing.T) {
	near := func(what string, got, want time.Time) {
		t.Helper()
		if d := got.Sub(want); d < -200*time.Millisecond || d > 200*time.Millisecond {
			t.Errorf("%s ends %v from the expected time", what, d)
		}
	}
	p := &pid1{timeout: 30 * time.Second, grace: 5 * time.Second}
	now := time.Now()
	p.beginShutdown()
	near("the deadline", p.deadline, now.Add(29*time.Second))
	near("rc 0", p.before(p.timeout, 2*p.grace), now.Add(19*time.Second))
	near("the SIGTERM grace, in time", p.before(p.grace, p.grace), now.Add(5*time.Second))
	// rc 0 took its whole time: the graces shrink to what is left.
	p.deadline = time.Now().Add(2 * p.grace)
	near("the SIGTERM grace, after rc 0's time", p.before(p.grace, p.grace), time.Now().Add(p.grace))
	p.deadline = time.Now().Add(p.grace / 2)
	near("the SIGKILL grace, late", p.before(p.grace, 0), time.Now().Add(p.grace/2))
	p.deadline = time.Now().Add(-time.Second)
	near("a step past the deadline", p.before(p.grace, 0), time.Now().Add(100*time.Millisecond))
}
