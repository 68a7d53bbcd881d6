package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/testguest"
)

// Site stages written in shell, run by the shipped exec stage
// (plugins/exec): a script in a pipeline block, called with the verb.

// hookDir writes scripts (name → body) as a site installs them: root's,
// 0755, in a directory that is root's and 0755. It returns the directory.
func hookDir(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// calls reads a hook's call log, one line per call.
func calls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// called reports whether a call log has a line starting with prefix.
func called(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// greetScript logs every call with what it saw, says so on stderr, prints
// its JSON in up and checks in down that its state came back.
const greetScript = `#!/bin/sh
echo "$1 $SUBHOST_NAME stage=$SUBHOST_STAGE root=$SUBHOST_ROOT netns=$SUBHOST_NETNS pid=$SUBHOST_PID greeting=$SUBHOST_PARAM_GREETING_TEXT disks=$SUBHOST_VAR_DISKS" >>"$SUBHOST_PARAM_LOG"
echo "hook $1 for $SUBHOST_NAME" >&2
case $1 in
up)
	# A daemon of its own, which outlives the script and its plugin.
	setsid sh -c 'sleep 0.3' </dev/null >/dev/null 2>&1 &
	echo '{"extra": {"hook": "was-here"}, "state": {"greeted": true}}' ;;
down) grep -q '"state":{"greeted":true}' && echo "down got its state" >>"$SUBHOST_PARAM_LOG" ;;
esac
exit 0
`

// TestExecStage boots a guest through mount-loop → net-veth → a shell
// script → init: the script sees the subhost's facts and its parameters,
// what it prints reaches `status --json`, `subhost stage hook
// check|down|up` run its check, down and up, and stop runs its down with
// its state.
func TestExecStage(t *testing.T) {
	e := newEnv(t)
	ns, _ := e.testnet()
	hooks := hookDir(t, map[string]string{"greet.sh": greetScript})
	log := filepath.Join(t.TempDir(), "calls")
	site := []string{"--pipeline-file", pipelineFile(t, fmt.Sprintf(`
pipeline "e2e-exec" {
  home    = "/opt/sub"
  on_exit = "down"
  stage "mount-loop" {}
  stage "net-veth" {}
  stage "hook" {
    plugin        = "exec"
    script        = %q
    log           = %q
    greeting-text = "hello"
  }
  stage "cgroup" {}
  stage "init" {
    mode = "sysv"
  }
}
`, filepath.Join(hooks, "greet.sh"), log))}
	r := testguest.BusyboxRoot(t, filepath.Join(t.TempDir(), "root"))
	img := testguest.Image(t, r.Dir, "none")
	n := e.name("exec")
	h := e.home("DISKS=( vda:0:" + img + " )\nBRIDGES=( br0:06:a7:dd:b4:24:02 )")
	t.Cleanup(e.stopAll)
	e.mustRun(ns, append(site, "-v", "run", "--detach", "--pipeline", "e2e-exec", "--home", h, n)...)

	got := calls(t, log)
	disks := "disks=vda:0:" + img
	if want := "validate " + n + " stage=hook root= netns= pid= greeting=hello " + disks; !called(got, want) {
		t.Errorf("no call %q in %q", want, got)
	}
	if want := "up " + n + " stage=hook root=" + filepath.Join(h, "live") + " netns=/run/netns/" + n + " pid= greeting=hello " + disks; !called(got, want) {
		t.Errorf("no call %q in %q", want, got)
	}
	st := e.status(n)
	if st.State != "running" || st.Extra["hook"] != "was-here" {
		t.Errorf("status: %s, extra %v; want running with extra hook=was-here", st.State, st.Extra)
	}
	// The script's daemon, orphaned, became the supervisor's child (it is
	// a child subreaper); once it has ended it is reaped, not left a
	// zombie for as long as the guest runs.
	time.Sleep(time.Second)
	if z := zombieChildren(st.Supervisor); len(z) > 0 {
		t.Errorf("the supervisor (pid %d) has zombie children %v", st.Supervisor, z)
	}
	// Its standard error is in the runner's log, with the stage's name.
	if b, _ := os.ReadFile(filepath.Join(logDir, n+".supervisor.log")); !strings.Contains(string(b), "subhost.hook.exec: hook up for "+n) {
		t.Errorf("the script's standard error is not in the supervisor's log:\n%s", tail(string(b), 2000))
	}

	if o, er, code := e.run(append(site, "stage", "hook", "check", "--pipeline", "e2e-exec", n)...); code != 0 || !strings.Contains(o, `"op": "check"`) {
		t.Errorf("stage hook check: exit %d: %s%s", code, o, er)
	}
	if got = calls(t, log); !called(got, "check "+n+" ") {
		t.Errorf("stage hook check did not run the script's check: %q", got)
	}

	// Down and up again, alone: the extra goes and comes back.
	os.Remove(log)
	if o, er, code := e.run(append(site, "stage", "hook", "down", "--pipeline", "e2e-exec", n)...); code != 0 {
		t.Errorf("stage hook down: exit %d: %s%s", code, o, er)
	}
	if got = calls(t, log); !called(got, "down "+n+" ") || !called(got, "down got its state") {
		t.Errorf("stage hook down did not run the script's down with its state: %q", got)
	}
	if st = e.status(n); st.Extra["hook"] != "" {
		t.Errorf("extra after stage hook down: %v, want none", st.Extra)
	}
	if o, er, code := e.run(append(site, "stage", "hook", "up", "--pipeline", "e2e-exec", n)...); code != 0 {
		t.Errorf("stage hook up: exit %d: %s%s", code, o, er)
	}
	if got = calls(t, log); !called(got, "up "+n+" ") {
		t.Errorf("stage hook up did not run the script's up: %q", got)
	}
	if st = e.status(n); st.State != "running" || st.Extra["hook"] != "was-here" {
		t.Errorf("status after stage hook up: %s, extra %v", st.State, st.Extra)
	}

	os.Remove(log)
	e.mustRun("", "stop", n)
	e.clean(n)
	if got = calls(t, log); !called(got, "down "+n+" stage=hook root="+filepath.Join(h, "live")) || !called(got, "down got its state") {
		t.Errorf("stop did not run the script's down with its state: %q", got)
	}
}

// siteScript logs its calls and does in up what its parameter mode says:
// fail, print garbage, or hang with two children (one deaf to SIGTERM)
// after writing the PIDs of all three and of its group's leader.
const siteScript = `#!/bin/sh
echo "$1 $SUBHOST_NAME" >>"$SUBHOST_PARAM_LOG"
[ "$1" = up ] || exit 0
case $SUBHOST_PARAM_MODE in
fail)
	echo "asking rack 7" >&2
	echo "no capacity left on rack 7" >&2
	exit 3
	;;
junk)
	echo "all done, thanks"
	;;
hang)
	(trap '' TERM; exec sleep 300) &
	echo $! >"$SUBHOST_PARAM_PIDS"
	sleep 300 &
	echo $! >>"$SUBHOST_PARAM_PIDS"
	echo $$ >>"$SUBHOST_PARAM_PIDS"
	cut -d' ' -f5 /proc/$$/stat >>"$SUBHOST_PARAM_PIDS"
	wait
	;;
esac
`

// TestExecStageFailures runs mount-loop → a failing script: failing,
// printing garbage or hanging in up, the run exits 1 with the script's
// own message and everything, the script's down included, is rolled back;
// a world-writable script is refused with exit 2 before anything runs.
func TestExecStageFailures(t *testing.T) {
	e := newEnv(t)
	hooks := hookDir(t, map[string]string{"site.sh": siteScript, "insecure.sh": siteScript})
	if err := os.Chmod(filepath.Join(hooks, "insecure.sh"), 0o777); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	log, pids := filepath.Join(tmp, "calls"), filepath.Join(tmp, "pids")
	var hcl strings.Builder
	for _, p := range []struct{ name, script, mode, timeout string }{
		{"e2e-exfail", "site.sh", "fail", "60s"},
		{"e2e-exjunk", "site.sh", "junk", "60s"},
		{"e2e-exhang", "site.sh", "hang", "3s"},
		{"e2e-exbad", "insecure.sh", "fail", "60s"},
	} {
		fmt.Fprintf(&hcl, `
pipeline %q {
  home = "/opt/sub"
  stage "mount-loop" {}
  stage "hook" {
    plugin  = "exec"
    script  = %q
    log     = %q
    pids    = %q
    mode    = %q
    timeout = %q
  }
}
`, p.name, filepath.Join(hooks, p.script), log, pids, p.mode, p.timeout)
	}
	site := []string{"--pipeline-file", pipelineFile(t, hcl.String())}
	r := testguest.BusyboxRoot(t, filepath.Join(t.TempDir(), "root"))
	img := testguest.Image(t, r.Dir, "none")
	h := e.home("DISKS=( vda:0:" + img + " )")
	t.Cleanup(e.stopAll)

	siteSh := filepath.Join(hooks, "site.sh")
	tests := []struct {
		pipeline string
		code     int
		stderr   string
		ran      bool // the script was called (and so must have been rolled back)
	}{
		{"e2e-exfail", 1, `stage "hook": script ` + siteSh + ` up: no capacity left on rack 7 (exit status 3)`, true},
		{"e2e-exjunk", 1, `stage "hook": script ` + siteSh + ` up: it printed "all done, thanks": want nothing, or one JSON object`, true},
		{"e2e-exhang", 1, `stage "hook": script ` + siteSh + ` up: still running after `, true},
		{"e2e-exbad", 2, `stage "hook": script ` + filepath.Join(hooks, "insecure.sh") + ` is writable by group or others (mode 0777): chmod go-w it`, false},
	}
	for _, tt := range tests {
		t.Run(tt.pipeline, func(t *testing.T) {
			n := e.name("exf")
			start := time.Now()
			_, er, code := e.run(append(site, "run", "--detach", "--pipeline", tt.pipeline, "--home", h, n)...)
			if code != tt.code || !strings.Contains(er, tt.stderr) {
				t.Errorf("run: exit %d, want %d with %q:\n%s", code, tt.code, tt.stderr, er)
			}
			got := calls(t, log)
			switch {
			case !tt.ran && called(got, "validate "+n):
				t.Errorf("the refused script ran: %q", got)
			case tt.ran && !called(got, "down "+n):
				t.Errorf("the failed script was not rolled back with its down: %q", got)
			}
			if st := e.status(n); st.State != "stopped" {
				t.Errorf("after the failed run: %s, want stopped (all rolled back)", st.State)
			}
			if tt.pipeline == "e2e-exhang" {
				if d := time.Since(start); d > 20*time.Second {
					t.Errorf("the hanging script took %s to be killed (timeout 3s)", d)
				}
				for _, f := range strings.Fields(readFile(t, pids)) {
					pid, _ := strconv.Atoi(f)
					if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(b), ") Z ") {
						t.Errorf("process %d of the hanging script outlived its timeout", pid)
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
		})
	}
}

// zombieChildren lists the children of pid that are zombies.
func zombieChildren(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(b)) {
			stat, err := os.ReadFile("/proc/" + field + "/stat")
			if _, after, ok := strings.Cut(string(stat), ") "); err == nil && ok && strings.HasPrefix(after, "Z") {
				child, _ := strconv.Atoi(field)
				out = append(out, child)
			}
		}
	}
	return out
}
