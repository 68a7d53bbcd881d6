package runner

import (
	"fmt"
	"strings"
	"time"

	"github.com/subhost/subhost/internal/guestexit"
	"github.com/subhost/subhost/sdk"
)

// RestartVar is the config variable that says when the supervisor starts
// the guest again after its PID 1 ended.
const RestartVar = "RESTART"

// RestartPolicy is RESTART=: no (the default), on-failure or always.
type RestartPolicy string

// Restart policies.
const (
	RestartNo        RestartPolicy = "no"
	RestartOnFailure RestartPolicy = "on-failure"
	RestartAlways    RestartPolicy = "always"
)

// Restart limits: more restarts than RestartBurst within RestartWindow and
// the supervisor gives up (a guest failing in a loop).
const (
	RestartBurst  = 10
	RestartWindow = time.Minute
)

// restartPolicy reads RESTART from the config: one word, one of the
// policies; anything else is bad input naming the variable.
func restartPolicy(sub sdk.Subhost) (RestartPolicy, error) {
	v, ok := sub.Lookup(RestartVar)
	if !ok {
		return RestartNo, nil
	}
	where := v.Origin
	if where == "" {
		where = sub.ConfigFile
	}
	if len(v.Words) != 1 {
		return "", sdk.Invalidf("%s: %s must be one word: no, on-failure or always (got %q)", where, RestartVar, strings.Join(v.Words, " "))
	}
	switch p := RestartPolicy(v.Words[0]); p {
	case RestartNo, RestartOnFailure, RestartAlways:
		return p, nil
	}
	return "", sdk.Invalidf("%s: %s=%q: want no, on-failure or always", where, RestartVar, v.Words[0])
}

// wants says whether the policy starts the guest again after its PID 1
// ended so. A reboot is the guest's own request and is always honoured
// elsewhere; a power-off counts as a failure for nobody.
func (p RestartPolicy) wants(o guestexit.Outcome) bool {
	switch p {
	case RestartOnFailure:
		return o == guestexit.Crashed
	case RestartAlways:
		return o == guestexit.Crashed || o == guestexit.PowerOff
	}
	return false
}

// restartLimiter remembers recent restarts to stop a restart loop.
type restartLimiter struct {
	times []time.Time
}

// allow records a restart at now, or returns why it must not happen.
func (l *restartLimiter) allow(now time.Time) error {
	kept := l.times[:0]
	for _, t := range l.times {
		if now.Sub(t) < RestartWindow {
			kept = append(kept, t)
		}
	}
	l.times = kept
	if len(l.times) >= RestartBurst {
		return fmt.Errorf("restarted %d times within %s: giving up", len(l.times), RestartWindow)
	}
	l.times = append(l.times, now)
	return nil
}
