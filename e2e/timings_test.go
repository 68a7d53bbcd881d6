package e2e

import (
	"strconv"
	"strings"
	"testing"
)

// TestRunTimings: `run --detach --timings` prints the boot as a timeline
// on standard error: the CLI's and the supervisor's start, each plugin's
// handshake, each stage call, the guest running and its first console
// output, each where it belongs in time.
func TestRunTimings(t *testing.T) {
	e := newEnv(t)
	g := e.newGuest("tmngs", nil)
	_, stderr, code := e.inNet(g.ns, g.runArgs("--detach", "--timings")...)
	if code != 0 {
		t.Fatalf("run --detach --timings: exit %d: %s", code, stderr)
	}
	g.waitReady()
	defer func() {
		e.mustRun("", "stop", g.name)
		e.clean(g.name)
	}()
	_, table, ok := strings.Cut(stderr, "boot timeline:\n")
	if !ok {
		t.Fatalf("no timeline on standard error:\n%s", stderr)
	}
	// "ms step who what": the first mark whose line ends with what, by who.
	at := func(who, what string) float64 {
		for _, l := range strings.Split(table, "\n") {
			f := strings.Fields(l)
			if len(f) < 4 || !strings.Contains(l, "  "+who+" ") || !strings.HasSuffix(l, " "+what) {
				continue
			}
			if ms, err := strconv.ParseFloat(f[0], 64); err == nil {
				return ms
			}
		}
		t.Fatalf("no mark %q by %q in:\n%s", what, who, table)
		return 0
	}
	order := [][2][2]string{
		{{"cli", "main"}, {"supervisor", "main"}},
		{{"supervisor", "main"}, {"stage mount-loop", "plugin answered (handshake)"}},
		{{"stage mount-loop", "plugin answered (handshake)"}, {"stage mount-loop", "validate returned"}},
		// net-veth comes up beside mount-loop and cgroup; cgroup reads
		// the disks that mount-loop attaches; init waits for all.
		{{"stage mount-loop", "up returned"}, {"stage cgroup", "up"}},
		{{"stage net-veth", "up returned"}, {"stage init", "up"}},
		{{"stage cgroup", "up returned"}, {"stage init", "up"}},
		{{"stage init", "up"}, {"guest", "first console output"}},
		{{"stage init", "up returned"}, {"supervisor", "runs: ready"}},
		{{"supervisor", "runs: ready"}, {"cli", "supervisor reports the guest running"}},
	}
	for _, o := range order {
		a, b := at(o[0][0], o[0][1]), at(o[1][0], o[1][1])
		if a > b {
			t.Errorf("%s %q at %.1f ms, after %s %q at %.1f ms in:\n%s", o[0][0], o[0][1], a, o[1][0], o[1][1], b, table)
		}
	}
}
