package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// downRequest is what `subhost stop` sends init's Down after a runner
// died while init's Up was pending: the boot record of the stages before
// init (here, the root) and no state.
func downRequest(req *sdk.Request) *sdk.Request {
	r := *req
	r.State = nil
	r.Record.GuestPID, r.Record.GuestStartTime = 0, 0
	return &r
}

// TestRunnerDiesDuringUp: over real RPC, Up boots the guest and its
// result is thrown away, as by a runner killed before it recorded it;
// Down with the request that has no state powers the guest off.
func TestRunnerDiesDuringUp(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	root := scratchRoot(t, "wait")
	s := stagetest.Serve(t, &stage{})
	req := guestRequest(t, root, nil)
	res := upGuest(t, s, req) // the runner never records res
	readReport(t, root)
	pid := res.Record.GuestPID

	down := downRequest(req)
	if err := s.Check(ctx(t), down); err != nil {
		t.Errorf("Check: %v", err)
	}
	if err := s.Down(ctx(t), down); err != nil {
		t.Fatalf("Down: %v", err)
	}
	ws, _ := reap(t, pid, 5*time.Second)
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("guest ended with %v, want an orderly power off", ws)
	}
	if c := children(t); len(c) > 0 {
		t.Errorf("child processes %v left", c)
	}
	noRecord(t, req)
	if err := s.Down(ctx(t), down); err != nil {
		t.Errorf("Down again: %v", err)
	}
}

// upHelperEnv, set to a request's JSON, makes the test binary a stand-in
// for the plugin process (see TestMain): it runs Up and then waits,
// never returning its result, to be killed.
const upHelperEnv = "SUBHOST_INIT_TEST_UP"

func upHelper(reqJSON string) {
	var req sdk.Request
	if err := json.Unmarshal([]byte(reqJSON), &req); err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	res, err := (&stage{}).Up(context.Background(), &req)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("up", res.Record.GuestPID)
	for {
		time.Sleep(time.Hour)
	}
}

// TestPluginKilledDuringUp kills the plugin process, with its process
// group as the runner does, while Up is pending: once the guest has
// booted, or as soon as the launch record exists, mid-launch. The guest
// (or a launcher that gave up) becomes this process's child, as it would
// the runner's; Down with no state and no guest in the boot record leaves
// nothing.
func TestPluginKilledDuringUp(t *testing.T) {
	for _, tt := range []struct {
		name   string
		booted bool // kill once Up has returned; otherwise once the record exists
	}{
		{"after boot", true},
		{"mid-launch", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stagetest.RequireRoot(t)
			stagetest.NoLeaks(t)
			root := scratchRoot(t, "wait")
			req := guestRequest(t, root, map[string]string{"shutdown_timeout": "5s"})
			path, err := launchRecordPath(req.Subhost)
			if err != nil {
				t.Fatal(err)
			}
			data, err := json.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			dir, err := testLauncherDir()
			if err != nil {
				t.Fatal(err)
			}
			plugin := exec.Command(os.Args[0])
			plugin.Env = append(os.Environ(), upHelperEnv+"="+string(data), launcherDirEnv+"="+dir)
			plugin.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
			out, err := plugin.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := plugin.Start(); err != nil {
				t.Fatal(err)
			}
			killed := false
			kill := func() {
				if !killed {
					killed = true
					unix.Kill(-plugin.Process.Pid, unix.SIGKILL)
					plugin.Wait()
				}
			}
			// Whatever happens, nothing of this test's outlives it.
			t.Cleanup(func() {
				kill()
				if lr, ok := readLaunchRecord(path); ok {
					if alive(lr.PID, lr.StartTime) {
						unix.Kill(lr.PID, unix.SIGKILL)
					}
					reap(t, lr.PID, 10*time.Second)
				}
			})

			if tt.booted {
				line, _ := bufio.NewReader(out).ReadString('\n')
				if !strings.HasPrefix(line, "up ") {
					t.Fatalf("plugin stand-in: %q", line)
				}
				readReport(t, root)
			} else {
				deadline := time.Now().Add(15 * time.Second)
				for {
					if _, err := os.Lstat(path); err == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("no launch record")
					}
					time.Sleep(time.Millisecond)
				}
			}
			kill()
			_, lr := recordOf(t, req)
			comm, state := procComm(lr.PID)
			t.Logf("after the kill, guest pid %d is %q, state %c", lr.PID, comm, state)

			began := time.Now()
			if err := (&stage{}).Down(ctx(t), downRequest(req)); err != nil {
				t.Fatalf("Down: %v", err)
			}
			t.Logf("Down took %v", time.Since(began).Round(time.Millisecond))
			if alive(lr.PID, lr.StartTime) {
				t.Fatalf("guest pid %d still running after Down", lr.PID)
			}
			reap(t, lr.PID, 5*time.Second)
			if c := children(t); len(c) > 0 {
				t.Errorf("child processes %v left", c)
			}
			noRecord(t, req)
			if tt.booted {
				if _, err := os.Stat(filepath.Join(root, "got-sigpwr")); err != nil {
					t.Errorf("the guest was not powered off with SIGPWR: %v", err)
				}
			}
		})
	}
}
