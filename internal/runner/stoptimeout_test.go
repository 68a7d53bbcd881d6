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
