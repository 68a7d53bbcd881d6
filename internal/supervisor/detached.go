package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"syscall"
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
	sc := bufio.NewScanner(evR)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
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
	err = sup.Wait()
	return 0, fmt.Errorf("subhost %s: the supervisor ended before the guest ran (%v); see %s", spec.Target.Name, err, spec.Settings.SupervisorLog(spec.Target.Name))
}
