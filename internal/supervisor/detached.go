package supervisor

import (
	"context"
	"fmt"
	"syscall"

	"github.com/subhost/subhost/internal/supervisor/events"
)

// StartDetached starts a supervisor for spec and returns once the guest's
// PID 1 runs (its PID; 0 for a pipeline that launches no guest), leaving
// the supervisor running on its own, as `subhost run --detach` does. When
// ctx ends first, the supervisor is interrupted: it rolls the boot back.
func StartDetached(ctx context.Context, spec Spec) (int, error) {
	spec.Detached = true
	sup, evR, err := Start(spec)
	if err != nil {
		return 0, err
	}
	defer evR.Close()
	stop := context.AfterFunc(ctx, func() { sup.Process.Signal(syscall.SIGINT) })
	defer stop()
	rd := events.NewReader(evR)
	for {
		e, ok := rd.Next()
		if !ok {
			break
		}
		if e.Error != "" {
			sup.Wait()
			return 0, ErrOf(e)
		}
		if e.Ready {
			if e.PID == 0 {
				sup.Wait()
			} else {
				sup.Process.Release()
			}
			return e.PID, nil
		}
	}
	return 0, EndedEarly(spec.Target.Name, sup.Wait(), rd.Log)
}

// EndedEarly is the error for a supervisor that ended before the guest
// ran without saying why (crashed, killed): its log says more, at the
// path its Log event gave, or, when it ended before its boot began (no
// log yet: PendingLog), what it wrote went to the standard error it was
// started with.
func EndedEarly(name string, waitErr error, log string) error {
	if log == "" {
		return fmt.Errorf("subhost %s: the supervisor ended before the guest ran (%v), before it opened its log: what it wrote is above", name, waitErr)
	}
	return fmt.Errorf("subhost %s: the supervisor ended before the guest ran (%v); see %s", name, waitErr, log)
}
