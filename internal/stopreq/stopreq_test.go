package stopreq

import (
	"testing"
	"time"
)

// How long a guest gets, and a stop waits: what the stop asks, else the
// guest's own timeout (a guest whose PID 1 was given 2m must not be cut
// short at 30s), else DefaultGuestTimeout; a forced stop waits for the
// Downs only.
func TestTimeouts(t *testing.T) {
	for _, tc := range []struct {
		asked   time.Duration
		force   bool
		guestMS int64
		guest   time.Duration
		wait    time.Duration
	}{
		{0, false, 0, DefaultGuestTimeout, DefaultGuestTimeout + 2*time.Minute},
		{0, false, 120000, 2 * time.Minute, 4 * time.Minute},
		{5 * time.Second, false, 120000, 5 * time.Second, 5*time.Second + 2*time.Minute},
		{0, true, 120000, 2 * time.Minute, 10 * time.Second},
		{3 * time.Second, true, 0, 3 * time.Second, 13 * time.Second},
	} {
		if got := GuestTimeout(tc.asked, tc.guestMS); got != tc.guest {
			t.Errorf("GuestTimeout(%s, %d) = %s, want %s", tc.asked, tc.guestMS, got, tc.guest)
		}
		if got := SupervisorWait(tc.asked, tc.force, tc.guestMS); got != tc.wait {
			t.Errorf("SupervisorWait(%s, %v, %d) = %s, want %s", tc.asked, tc.force, tc.guestMS, got, tc.wait)
		}
	}
}

func TestRequestIsTakenOnce(t *testing.T) {
	dir := t.TempDir()
	if _, ok := Take(dir); ok {
		t.Fatal("a request in an empty directory")
	}
	want := Request{TimeoutMS: 5000, Force: true}
	if err := Write(dir, want); err != nil {
		t.Fatal(err)
	}
	if got, ok := Take(dir); !ok || got != want {
		t.Fatalf("took %+v, %v; want %+v", got, ok, want)
	}
	if _, ok := Take(dir); ok {
		t.Fatal("the request was taken twice")
	}
}
