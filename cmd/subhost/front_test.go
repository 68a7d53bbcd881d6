package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/state"
)

// TestDetachedRunInterrupted: an interrupt of `run --detach` during the
// boot reaches the full CLI the front started as the supervisor, which
// rolls back; the front reports the error and leaves nothing running.
func TestDetachedRunInterrupted(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a", "b"}, map[string]string{"b": `behavior = "hang"` + "\n    timeout = \"5m\""})
	run := c.cmd("run", "--detach", "--pipeline", "p", "intr")
	var stderr bytes.Buffer
	run.Stderr = &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "stage b pending", func() bool { return c.stageStatus("intr", "b") == state.StagePending })
	supervisor := c.holder("intr")
	if supervisor == 0 || supervisor == run.Process.Pid {
		t.Fatalf("the boot is held by pid %d, want the supervisor the front (pid %d) started", supervisor, run.Process.Pid)
	}
	if cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(supervisor) + "/cmdline"); !bytes.Contains(cmdline, []byte("--events-fd=3\x00")) {
		t.Errorf("the supervisor runs %q, not the full CLI for the front", bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
	run.Process.Signal(syscall.SIGINT)
	err := run.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("interrupted run --detach: %v, want exit 1", err)
	}
	if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "subhost: ") {
		t.Errorf("want one error line, got:\n%s", stderr.String())
	}
	waitFor(t, 20*time.Second, "the supervisor to end", func() bool { return syscall.Kill(supervisor, 0) != nil })
	if _, err := os.Stat(filepath.Join(c.states, "intr", "state.json")); !os.IsNotExist(err) {
		t.Errorf("state left: %v", err)
	}
	if got := strings.Join(c.calls("down"), ","); got != "b,a" {
		t.Errorf("down calls %q, want b,a", got)
	}
}

// TestFrontFindsOnlyATrustedCLI: the front runs the full CLI as root, so
// one that anyone but root could have written is refused, in one line, as
// is a missing one.
func TestFrontFindsOnlyATrustedCLI(t *testing.T) {
	front, err := os.ReadFile(filepath.Join(binDir, "subhost"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cli  os.FileMode // 0: none
		want string
	}{
		{"missing", 0, "the full CLI subhost-cli is not in "},
		{"group-writable", 0o775, "is writable by group or others (mode 0775): chmod go-w it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.Chmod(dir, 0o755)
			if err := os.WriteFile(filepath.Join(dir, "subhost"), front, 0o755); err != nil {
				t.Fatal(err)
			}
			os.Mkdir(filepath.Join(dir, "plugins"), 0o755)
			if tc.cli != 0 {
				cli := filepath.Join(dir, "plugins", "subhost-cli")
				os.WriteFile(cli, []byte("#!/bin/sh\necho ran\n"), 0o755)
				os.Chmod(cli, tc.cli)
			}
			for _, args := range [][]string{{"version"}, {"run", "-d", "x"}} {
				out, err := exec.Command(filepath.Join(dir, "subhost"), args...).CombinedOutput()
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
					t.Errorf("subhost %s: %v, output %q; want exit 1 and one line with %q", strings.Join(args, " "), err, out, tc.want)
				}
			}
		})
	}
}

// TestFrontPassesTheRestOn: whatever is not `run --detach` reaches the
// full CLI as it was typed, under the name it was typed with.
func TestFrontPassesTheRestOn(t *testing.T) {
	dir := t.TempDir()
	control := filepath.Join(dir, "control")
	if err := os.Symlink(filepath.Join(binDir, "subhost"), control); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv []string
		code int
		want string
	}{
		{[]string{filepath.Join(binDir, "subhost"), "version"}, 0, "subhost "},
		{[]string{filepath.Join(binDir, "subhost"), "run", "--detach", "--help"}, 0, "Bring every stage of the pipeline up"},
		{[]string{filepath.Join(binDir, "subhost"), "run", "-d"}, 2, "subhost: want NAME, got 0 argument(s)"},
		{[]string{control, "frob"}, 2, "usage: control start|stop NAME"},
	} {
		cmd := exec.Command(tc.argv[0], tc.argv[1:]...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != tc.code || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: exit %d, output %q; want exit %d and %q", strings.Join(tc.argv, " "), code, out, tc.code, tc.want)
		}
	}
}

// TestDetachedSupervisorDies: when the full CLI the front started dies
// during the boot (killed here), the front says so in one line naming the
// supervisor's log, and `subhost stop` takes down what the boot had made.
func TestDetachedSupervisorDies(t *testing.T) {
	c := newCLI(t)
	c.writePipeline([]string{"a", "b"}, map[string]string{"b": `behavior = "hang"` + "\n    timeout = \"5m\""})
	run := c.cmd("run", "-d", "--pipeline", "p", "died")
	var stderr bytes.Buffer
	run.Stderr = &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "stage b pending", func() bool { return c.stageStatus("died", "b") == state.StagePending })
	syscall.Kill(c.holder("died"), syscall.SIGKILL)
	err := run.Wait()
	want := "subhost: subhost died: the supervisor ended before the guest ran (signal: killed); see " + filepath.Join(c.dir, "logs", "died.supervisor.log") + "\n"
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || stderr.String() != want {
		t.Errorf("run -d: %v, stderr %q; want exit 1 and %q", err, stderr.String(), want)
	}
	waitFor(t, 10*time.Second, "the killed supervisor's plugins to die", func() bool {
		out, _ := exec.Command("pgrep", "-f", "teststage").Output()
		return len(bytes.TrimSpace(out)) == 0
	})
	if out, stderr, code := c.run("stop", "died"); code != 0 {
		t.Fatalf("stop after the supervisor died: exit %d\n%s%s", code, out, stderr)
	}
	if got := strings.Join(c.calls("down"), ","); got != "b,a" {
		t.Errorf("down calls %q, want b,a", got)
	}
}
