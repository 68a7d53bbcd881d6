package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/bootid"
	"github.com/subhost/subhost/internal/proc"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/internal/stopreq"
)

func TestParseStop(t *testing.T) {
	for _, tc := range []struct {
		line, root, name string // name "" when not for the front
	}{
		{"stop web", defaultStateRoot, "web"},
		{"stop web-2_b", defaultStateRoot, "web-2_b"},
		{"--state-dir /s stop web", "/s", "web"},
		{"stop --state-dir=/s web", "/s", "web"},
		{"--log-dir /l --etc-dir=/e --pipeline-file /f.hcl --plugin-dir /p stop web", defaultStateRoot, "web"},
		{"stop --log-dir stop web", defaultStateRoot, "web"}, // the value is not the command
		{"stop --timeout 5s web", "", ""},
		{"stop --force web", "", ""},
		{"stop -v web", "", ""},
		{"--log-level debug stop web", "", ""},
		{"--json stop web", "", ""},
		{"stop --help web", "", ""},
		{"stop --home /h web", "", ""}, // run's flag: the full CLI refuses it
		{"--state-dir= stop web", "", ""},
		{"stop web --state-dir", "", ""},
		{"stop", "", ""},
		{"stop a b", "", ""},
		{"status web", "", ""},
		{"stop ../web", "", ""},
		{"stop -web", "", ""},
		{"stop _web", "", ""},
		{"stop w.b", "", ""},
		{"stop " + strings.Repeat("a", 65), "", ""},
		{"", "", ""},
	} {
		line, ok := parseStop(strings.Fields(tc.line))
		if ok != (tc.name != "") || (ok && (line.name != tc.name || line.root != tc.root)) {
			t.Errorf("%q: got %+v, %v; want root %q, name %q", tc.line, line, ok, tc.root, tc.name)
		}
	}
}

func TestDefaultStateRootIsTheCLIs(t *testing.T) {
	if defaultStateRoot != state.DefaultRoot {
		t.Fatalf("the front's state root %q, the full CLI's %q", defaultStateRoot, state.DefaultRoot)
	}
}

// fakeSupervisor starts a process that does what a supervisor does with
// a stop, as far as the front can see: on SIGTERM it copies the stop
// request beside it (for the test to read), runs onTerm (a shell
// command in the subhost's directory) and ends. It writes a state naming
// itself with bootID.
func fakeSupervisor(t *testing.T, dir, bootID, onTerm string) *exec.Cmd {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready")
	cmd := exec.Command("sh", "-c", `trap 'cp stop.json request.json; `+onTerm+`; exit 0' TERM; touch ready; while :; do sleep 0.01; done`)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fake supervisor did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start, err := proc.StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	st := &state.State{Schema: state.Schema, Name: filepath.Base(dir), Status: state.Running,
		Supervisor: cmd.Process.Pid, SupervisorStartTime: start}
	st.Record.GuestStopTimeoutMS = 1000
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	// The boot ID as state.Save records it, or as the case wants.
	var m map[string]any
	json.Unmarshal(data, &m)
	m["boot_id"] = bootID
	data, _ = json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, "state.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// A plain stop of a supervised subhost: the front leaves the request the
// full CLI leaves (the guest's own timeout, no force), sends SIGTERM,
// waits for the supervisor to end and says the subhost stopped.
func TestStopSupervised(t *testing.T) {
	if bootid.Current() == "" {
		t.Skip("no boot ID on this kernel")
	}
	root := t.TempDir()
	dir := filepath.Join(root, "web")
	sup := fakeSupervisor(t, dir, bootid.Current(), "rm state.json")
	code, handled := stopSupervised(stopLine{root: root, name: "web"})
	if !handled || code != 0 {
		t.Fatalf("handled %v, code %d; want handled, 0", handled, code)
	}
	if err := sup.Wait(); err != nil {
		t.Fatalf("the supervisor: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "request.json"))
	if err != nil {
		t.Fatal(err)
	}
	var req stopreq.Request
	if err := json.Unmarshal(data, &req); err != nil || req != (stopreq.Request{}) {
		t.Fatalf("request %s (%v), want the plain one", data, err)
	}
}

// What the front leaves to the full CLI, having done nothing: no state, a
// state from another boot or without a boot ID, a supervisor that is
// gone. A supervisor that ends and leaves the state (a Down failed) has
// been asked, and the full CLI brings down what is left.
func TestStopLeftToTheFullCLI(t *testing.T) {
	if bootid.Current() == "" {
		t.Skip("no boot ID on this kernel")
	}
	root := t.TempDir()
	if _, handled := stopSupervised(stopLine{root: root, name: "none"}); handled {
		t.Error("a subhost without state was handled")
	}
	for name, boot := range map[string]string{"earlier": "4c5b7e0e-0000-4000-8000-000000000000", "older": ""} {
		dir := filepath.Join(root, name)
		fakeSupervisor(t, dir, boot, "rm state.json")
		if _, handled := stopSupervised(stopLine{root: root, name: name}); handled {
			t.Errorf("%s: a state with boot ID %q was handled", name, boot)
		}
		if _, err := os.Stat(filepath.Join(dir, stopreq.File)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: a request was left (%v)", name, err)
		}
	}

	dir := filepath.Join(root, "gone")
	sup := fakeSupervisor(t, dir, bootid.Current(), "rm state.json")
	sup.Process.Kill()
	sup.Wait()
	if _, handled := stopSupervised(stopLine{root: root, name: "gone"}); handled {
		t.Error("a subhost whose supervisor is gone was handled")
	}

	dir = filepath.Join(root, "failed")
	sup = fakeSupervisor(t, dir, bootid.Current(), "true")
	if _, handled := stopSupervised(stopLine{root: root, name: "failed"}); handled {
		t.Error("a stop whose supervisor left the state was handled")
	}
	if err := sup.Wait(); err != nil {
		t.Fatalf("the supervisor: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "request.json")); err != nil {
		t.Errorf("the supervisor was not asked: %v", err)
	}
}

// A supervisor that stays stopped (SIGSTOP, a debugger) never gets to
// the guest: the front says so, as the full CLI does, after
// stopreq.StoppedFor.
func TestStopSupervisorStopped(t *testing.T) {
	if bootid.Current() == "" {
		t.Skip("no boot ID on this kernel")
	}
	root := t.TempDir()
	sup := fakeSupervisor(t, filepath.Join(root, "web"), bootid.Current(), "rm state.json")
	sup.Process.Signal(syscall.SIGSTOP)
	t.Cleanup(func() { sup.Process.Signal(syscall.SIGCONT) })
	code, handled := stopSupervised(stopLine{root: root, name: "web"})
	if !handled || code != 1 {
		t.Fatalf("handled %v, code %d; want handled, 1", handled, code)
	}
}
