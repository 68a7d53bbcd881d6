package supervisor

import (
	"encoding/json"
	"os"

	"github.com/subhost/subhost/internal/console"
	"github.com/subhost/subhost/internal/monitor"
	"github.com/subhost/subhost/internal/runner"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/sdk"
)

// becomeMonitor executes subhost-monitor in this process once a guest
// runs (see package monitor), which executes this supervisor again when
// there is work. It returns only when that cannot happen, and the
// supervisor then carries on as it is.
func (sv *supervision) becomeMonitor(sup *runner.Supervision) {
	if sv.monitor == "" || sup.Stopping() {
		return
	}
	self, err := os.Executable()
	if err != nil {
		return
	}
	spec, err := json.Marshal(sv.spec)
	if err != nil {
		return
	}
	st := sup.State()
	ch, err := sv.con.HandOver()
	if err != nil {
		sv.r.Logger.Warn("staying the full supervisor", sdk.LogKeySubhost, sv.name, sdk.LogKeyError, err)
		return
	}
	h := monitor.Handover{
		Name:       sv.name,
		Spec:       spec,
		GuestPID:   st.Record.GuestPID,
		GuestStart: st.Record.GuestStartTime,
		Console:    ch,
		StopFile:   state.Dir{Root: sv.r.StateRoot, Name: sv.name}.StopRequestPath(),
		Supervisor: []string{self, Command, sv.name},
	}
	err = monitor.Exec([]string{sv.monitor, sv.name}, h, ch.Master, ch.Listener)
	// Still here: take the console back and stay.
	sv.r.Logger.Error("becoming subhost-monitor failed; staying the full supervisor", sdk.LogKeySubhost, sv.name, sdk.LogKeyError, err)
	if con, err := console.Adopt(sv.serveCtx, ch); err == nil {
		sv.con = con
	} else {
		sv.r.Logger.Error("console lost", sdk.LogKeySubhost, sv.name, sdk.LogKeyError, err)
	}
}

// stopRequested reports a stop request left beside the state: a SIGTERM
// that came while this process was being executed may have been lost.
func stopRequested(r *runner.Runner, name string) bool {
	_, err := os.Stat(state.Dir{Root: r.StateRoot, Name: name}.StopRequestPath())
	return err == nil
}
