package runner

import (
	"testing"
	"time"

	"github.com/subhost/subhost/sdk"
)

// A stop waits for the guest as long as the stop says, else as long as
// the stage that launched it gave its PID 1 (a pipeline's shutdown_timeout
// of 2m must not be cut short at 30s), else DefaultStopTimeout.
func TestStopTimeout(t *testing.T) {
	for _, tc := range []struct {
		opts StopOptions
		rec  sdk.BootRecord
		want time.Duration
	}{
		{StopOptions{Timeout: 5 * time.Second}, sdk.BootRecord{GuestStopTimeoutMS: 120000}, 5 * time.Second},
		{StopOptions{}, sdk.BootRecord{GuestStopTimeoutMS: 120000}, 2 * time.Minute},
		{StopOptions{}, sdk.BootRecord{}, DefaultStopTimeout},
	} {
		if got := tc.opts.timeout(tc.rec); got != tc.want {
			t.Errorf("%+v with %d ms recorded: %v, want %v", tc.opts, tc.rec.GuestStopTimeoutMS, got, tc.want)
		}
	}
}

// A forced stop waits for the supervisor only for its Downs, not for the
// guest's own power-off time, which it does not give the guest.
func TestSupervisorWait(t *testing.T) {
	rec := sdk.BootRecord{GuestStopTimeoutMS: 120000}
	if got := (StopOptions{Force: true}).supervisorWait(rec); got != 10*time.Second {
		t.Errorf("forced: %v, want 10s", got)
	}
	if got := (StopOptions{}).supervisorWait(rec); got != 4*time.Minute {
		t.Errorf("orderly: %v, want the guest's 2m and 2m for the Downs", got)
	}
}
