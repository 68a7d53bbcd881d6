package runner

import (
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/guestexit"
	"github.com/subhost/subhost/sdk"
)

func TestRestartPolicyFromConfig(t *testing.T) {
	sub := func(words ...string) sdk.Subhost {
		return sdk.Subhost{ConfigFile: "/h/config", Vars: map[string]sdk.Var{RestartVar: {Words: words, Origin: "/h/config:3"}}}
	}
	if p, err := restartPolicy(sdk.Subhost{}); err != nil || p != RestartNo {
		t.Errorf("no RESTART: %q %v, want no", p, err)
	}
	for _, w := range []string{"no", "on-failure", "always"} {
		if p, err := restartPolicy(sub(w)); err != nil || string(p) != w {
			t.Errorf("RESTART=%s: %q %v", w, p, err)
		}
	}
	for _, bad := range [][]string{{"sometimes"}, {"on-failure", "always"}, {""}} {
		_, err := restartPolicy(sub(bad...))
		if !sdk.IsKind(err, sdk.KindInvalidConfig) || !strings.Contains(err.Error(), "/h/config:3: RESTART") {
			t.Errorf("RESTART=%q: %v, want an invalid-config error naming the file, line and variable", bad, err)
		}
	}
}

func TestRestartPolicyWants(t *testing.T) {
	for _, tc := range []struct {
		p    RestartPolicy
		o    guestexit.Outcome
		want bool
	}{
		{RestartNo, guestexit.Crashed, false},
		{RestartOnFailure, guestexit.Crashed, true},
		{RestartOnFailure, guestexit.PowerOff, false},
		{RestartOnFailure, guestexit.Reboot, false},
		{RestartAlways, guestexit.Crashed, true},
		{RestartAlways, guestexit.PowerOff, true},
	} {
		if got := tc.p.wants(tc.o); got != tc.want {
			t.Errorf("%s after %s: %v, want %v", tc.p, tc.o, got, tc.want)
		}
	}
}

func TestRestartLimiter(t *testing.T) {
	var l restartLimiter
	t0 := time.Unix(1000, 0)
	for i := range RestartBurst {
		if err := l.allow(t0.Add(time.Duration(i) * time.Second)); err != nil {
			t.Fatalf("restart %d refused: %v", i+1, err)
		}
	}
	if err := l.allow(t0.Add(RestartBurst * time.Second)); err == nil {
		t.Errorf("restart %d within a minute allowed", RestartBurst+1)
	}
	// A minute after the first, one more is allowed again.
	if err := l.allow(t0.Add(RestartWindow)); err != nil {
		t.Errorf("restart after the window refused: %v", err)
	}
}
