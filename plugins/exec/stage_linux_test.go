package main

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// scriptIn writes an executable script into a fresh directory, both
// owned by the test's user and writable by no one else, as the trust rule
// wants, and returns its path.
func scriptIn(t *testing.T, name, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// copyScript installs a script of the repository like scriptIn.
func copyScript(t *testing.T, from string) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	return scriptIn(t, filepath.Base(from), string(b))
}

// request is a request for a subhost "exectest" whose stage "hook" runs
// script with params.
func request(script string, params map[string]string) *sdk.Request {
	p := map[string]string{paramScript: script}
	maps.Copy(p, params)
	return &sdk.Request{
		Subhost: sdk.Subhost{Name: "exectest", Home: "/opt/sub/exectest", Vars: map[string]sdk.Var{
			"DISKS": {Words: []string{"vda:1:/d/a.raw", "vdb:0:/d/b.raw"}, IsArray: true},
		}},
		Stage:  "hook",
		Params: p,
	}
}

func TestExecConformance(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "marker")
	req := request(copyScript(t, "testdata/marker.sh"), map[string]string{"marker": marker})
	req.Record = sdk.BootRecord{Root: "/opt/sub/exectest/live"}
	stagetest.Conformance(t, &stage{}, req)
}

// TestExampleConformance runs the example of examples/exec-stage, a hosts
// file kept by a shell script, through the conformance sequence; the file
// ends as it began, with another subhost's line kept.
func TestExecExampleConformance(t *testing.T) {
	hosts := filepath.Join(t.TempDir(), "hosts")
	const other = "198.18.7.7 other.sub.example.org other # subhost other\n"
	if err := os.WriteFile(hosts, []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	req := request(copyScript(t, "../../examples/exec-stage/dns-hosts.sh"), map[string]string{"hosts_file": hosts, "domain": "sub.example.org"})
	req.Subhost.Vars["DNS_ADDRESS"] = sdk.Var{Words: []string{"198.18.7.8"}}
	s := stagetest.Serve(t, &stage{})
	res, err := s.Up(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, hosts); got != other+"198.18.7.8 exectest.sub.example.org exectest # subhost exectest\n" {
		t.Errorf("hosts after up:\n%s", got)
	}
	if res.Record.Extra["dns_name"] != "exectest.sub.example.org" {
		t.Errorf("up's record: %+v", res.Record)
	}
	if err := s.Down(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	stagetest.Conformance(t, &stage{}, req)
	if got := readFile(t, hosts); got != other {
		t.Errorf("hosts after the conformance run:\n%s", got)
	}
	// Bad input is exit 2 from validate: invalid config, the script's
	// own message.
	delete(req.Subhost.Vars, "DNS_ADDRESS")
	err = s.Validate(context.Background(), req)
	if !sdk.IsKind(err, sdk.KindInvalidConfig) || !strings.Contains(err.Error(), "set DNS_ADDRESS") {
		t.Errorf("validate without DNS_ADDRESS: %v (kind %v)", err, sdk.KindOf(err))
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestScriptSees checks what the script gets: the verb, its fixed
// environment with parameters and config variables, the request on
// standard input with its previous state, and / as working directory.
func TestExecScriptSees(t *testing.T) {
	stagetest.NoLeaks(t)
	out := t.TempDir()
	script := scriptIn(t, "dump.sh", `#!/bin/sh
env >"$SUBHOST_PARAM_OUT/env.$1"
cat >"$SUBHOST_PARAM_OUT/stdin.$1"
pwd >"$SUBHOST_PARAM_OUT/pwd.$1"
[ "$1" = up ] && echo '{"extra": {"seen": "yes"}, "state": {"calls": 1}}'
exit 0
`)
	os.Setenv("SUBHOST_TEST_LEAK", "x") // must not reach the script
	defer os.Unsetenv("SUBHOST_TEST_LEAK")
	req := request(script, map[string]string{"out": out, "host-alias": "web"})
	s := stagetest.Serve(t, &stage{})
	ctx := context.Background()
	if err := s.Validate(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.Record = sdk.BootRecord{Root: "/opt/sub/exectest/live", Netns: "/run/netns/exectest", GuestPID: 77}
	res, err := s.Up(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Extra["seen"] != "yes" || string(res.State) != `{"calls": 1}` {
		t.Errorf("up: record %+v state %s", res.Record, res.State)
	}
	req.State = res.State
	if err := s.Down(ctx, req); err != nil {
		t.Fatal(err)
	}

	env := readFile(t, filepath.Join(out, "env.up"))
	for _, v := range []string{
		"PATH=" + scriptPath, "SUBHOST_NAME=exectest", "SUBHOST_HOME=/opt/sub/exectest", "SUBHOST_STAGE=hook",
		"SUBHOST_ROOT=/opt/sub/exectest/live", "SUBHOST_NETNS=/run/netns/exectest", "SUBHOST_PID=77",
		"SUBHOST_PARAM_HOST_ALIAS=web", "SUBHOST_PARAM_SCRIPT=" + script, "SUBHOST_VAR_DISKS=vda:1:/d/a.raw vdb:0:/d/b.raw",
	} {
		if !strings.Contains("\n"+env, "\n"+v+"\n") {
			t.Errorf("up's environment lacks %s:\n%s", v, env)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(env), "\n") {
		// sh adds PWD (and some add SHLVL, _) of its own.
		name, _, _ := strings.Cut(line, "=")
		if !strings.HasPrefix(name, "SUBHOST_") && name != "PATH" && name != "PWD" && name != "SHLVL" && name != "_" {
			t.Errorf("up's environment has %s, which subhost did not set", line)
		}
	}
	if strings.Contains(readFile(t, filepath.Join(out, "env.validate")), "SUBHOST_ROOT=/") {
		t.Errorf("validate's environment has a root: its boot record must be empty")
	}
	var in struct {
		Verb   string          `json:"verb"`
		Stage  string          `json:"stage"`
		Record sdk.BootRecord  `json:"record"`
		Params map[string]any  `json:"params"`
		State  json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(out, "stdin.down"))), &in); err != nil {
		t.Fatal(err)
	}
	if in.Verb != "down" || in.Stage != "hook" || in.Record.GuestPID != 77 || in.Params["out"] != out || string(in.State) != `{"calls":1}` {
		t.Errorf("down's standard input: %+v", in)
	}
	if pwd := readFile(t, filepath.Join(out, "pwd.up")); pwd != "/\n" {
		t.Errorf("working directory %q, want /", pwd)
	}
}

// TestScriptFails checks how a script's failures reach the runner: the
// last line of its standard error, every line logged, its exit status,
// and the kind that decides the runner's exit code.
func TestExecScriptFails(t *testing.T) {
	stagetest.NoLeaks(t)
	script := scriptIn(t, "fail.sh", `#!/bin/sh
case $1 in
validate) [ -n "$SUBHOST_PARAM_BAD" ] && { echo "parameter bad: no thanks" >&2; exit 2; } ;;
up) echo "checking rack 7" >&2; echo "no capacity left on rack 7" >&2; exit 3 ;;
down) echo "garbage on stdout" ;;
check) exit 1 ;;
esac
exit 0
`)
	ctx := context.Background()
	s := stagetest.Serve(t, &stage{})
	tests := []struct {
		name, verb string
		params     map[string]string
		kind       sdk.ErrorKind
		want       string
	}{
		{"validate exit 2", verbValidate, map[string]string{"bad": "1"}, sdk.KindInvalidConfig,
			"script " + script + " validate: parameter bad: no thanks (exit status 2)"},
		{"up exit 3", verbUp, nil, sdk.KindInternal,
			"script " + script + " up: no capacity left on rack 7 (exit status 3)"},
		{"garbage", verbDown, nil, sdk.KindInternal,
			"script " + script + ` down: it printed "garbage on stdout": ` + outputShape},
		{"check exit 1", verbCheck, nil, sdk.KindNotFound,
			"script " + script + " check: exit status 1, with nothing on standard error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := callVerb(ctx, s, tt.verb, request(script, tt.params))
			if err == nil || err.Error() != tt.want || sdk.KindOf(err) != tt.kind {
				t.Errorf("error %v (kind %v), want %q (kind %v)", err, sdk.KindOf(err), tt.want, tt.kind)
			}
		})
	}
}

// callVerb makes the stage call of a verb.
func callVerb(ctx context.Context, s sdk.Stage, verb string, req *sdk.Request) error {
	switch verb {
	case verbValidate:
		return s.Validate(ctx, req)
	case verbUp:
		_, err := s.Up(ctx, req)
		return err
	case verbDown:
		return s.Down(ctx, req)
	default:
		return s.Check(ctx, req)
	}
}

// TestStderrLogged checks that every standard error line reaches the log,
// named after the script.
func TestExecStderrLogged(t *testing.T) {
	script := scriptIn(t, "talk.sh", "#!/bin/sh\necho one >&2\necho two >&2\n")
	var lines []string
	if _, err := runScript(context.Background(), captureLogger(&lines), script, verbUp, request(script, nil)); err != nil {
		t.Fatal(err)
	}
	if strings.Join(lines, "|") != "one|two" {
		t.Errorf("logged %q", lines)
	}
}

// pidsOf reads the PIDs a script wrote into file, one per line.
func pidsOf(t *testing.T, file string) []int {
	t.Helper()
	var pids []int
	for _, f := range strings.Fields(readFile(t, file)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s: %q", file, f)
		}
		pids = append(pids, pid)
	}
	return pids
}

// gone waits a moment for each process to be gone (reaped by whoever
// inherited it) and reports those that are not.
func gone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			// A zombie is gone too: it runs nothing and awaits its parent.
			if err != nil || strings.Contains(string(b), ") Z ") {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("process %d of the script still runs", pid)
				syscall.Kill(pid, syscall.SIGKILL)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// hangScript starts a child that ignores SIGTERM and one that does not,
// writes their PIDs, its own and its process group's (the guard's), and
// hangs.
const hangScript = `#!/bin/sh
(trap '' TERM; exec sleep 300) &
echo $! >"$SUBHOST_PARAM_PIDS"
sleep 300 &
echo $! >>"$SUBHOST_PARAM_PIDS"
echo $$ >>"$SUBHOST_PARAM_PIDS"
cut -d' ' -f5 /proc/$$/stat >>"$SUBHOST_PARAM_PIDS"
echo "waiting for rack 7" >&2
wait
`

// waitFile waits for a file to hold n lines.
func waitFile(t *testing.T, p string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(p); err == nil && strings.Count(string(b), "\n") >= n {
			return
		}
	}
	t.Fatalf("%s never got %d lines", p, n)
}

// TestTimeoutKillsGroup runs a hanging script, with children, through RPC
// with a deadline as the runner sets one: the call fails before the
// deadline, naming the script, and nothing of it is left.
func TestExecTimeoutKillsGroup(t *testing.T) {
	stagetest.NoLeaks(t)
	pids := filepath.Join(t.TempDir(), "pids")
	script := scriptIn(t, "hang.sh", hangScript)
	s := stagetest.Serve(t, &stage{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := s.Up(ctx, request(script, map[string]string{"pids": pids}))
	if ctx.Err() != nil {
		t.Errorf("the call ended after its deadline: the runner would have killed the plugin first")
	}
	if err == nil || !strings.HasPrefix(err.Error(), "script "+script+" up: still running after ") ||
		!strings.HasSuffix(err.Error(), "at the stage's timeout: killed it and its process group") {
		t.Errorf("error %v", err)
	}
	gone(t, pidsOf(t, pids))
}

// TestCancelKillsGroup cancels a call (the runner interrupted): the script
// and its children are killed at once.
func TestExecCancelKillsGroup(t *testing.T) {
	stagetest.NoLeaks(t)
	pids := filepath.Join(t.TempDir(), "pids")
	script := scriptIn(t, "hang.sh", hangScript)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		waitFile(t, pids, 4)
		cancel()
	}()
	_, err := runScript(ctx, hclog.NewNullLogger(), script, verbUp, request(script, map[string]string{"pids": pids}))
	if err == nil || !strings.Contains(err.Error(), "the call was cancelled (context canceled): killed it and its process group") {
		t.Errorf("error %v", err)
	}
	gone(t, pidsOf(t, pids))
}

// TestBackgroundKeepsOutput: a script that leaves a background process
// holding its standard output does not hang the call.
func TestExecBackgroundKeepsOutput(t *testing.T) {
	stagetest.NoLeaks(t)
	pids := filepath.Join(t.TempDir(), "pids")
	script := scriptIn(t, "bg.sh", `#!/bin/sh
sleep 60 &
echo $! >"$SUBHOST_PARAM_PIDS"
echo '{"extra": {"bg": "started"}}'
`)
	start := time.Now()
	var lines []string
	out, err := runScript(context.Background(), captureLogger(&lines), script, verbUp, request(script, map[string]string{"pids": pids}))
	for _, pid := range pidsOf(t, pids) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if err != nil || !strings.Contains(string(out), `"bg": "started"`) {
		t.Errorf("output %q, error %v", out, err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the call waited %s for the background process", d)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "still holds its standard output") {
		t.Errorf("logged %q, want a warning about the background process", lines)
	}
}

// TestRefused checks the trust rule and the parameter: each bad script is
// refused as bad input before anything runs.
func TestExecRefused(t *testing.T) {
	stagetest.RequireRoot(t) // chown
	stagetest.NoLeaks(t)
	ran := filepath.Join(t.TempDir(), "ran")
	body := "#!/bin/sh\ntouch " + ran + "\n"
	tests := []struct {
		name    string
		setup   func(p string) string // changes the good script at p, returns the parameter
		wantErr string
	}{
		{"world-writable", func(p string) string { os.Chmod(p, 0o777); return p }, "is writable by group or others (mode 0777): chmod go-w it"},
		{"group-writable dir", func(p string) string { os.Chmod(filepath.Dir(p), 0o775); return p }, "script directory " + "DIR is writable by group or others"},
		{"not root's", func(p string) string { os.Chown(p, 65534, 65534); return p }, "is owned by uid 65534, not root: chown root it"},
		{"missing", func(p string) string { os.Remove(p); return p }, "no such file or directory"},
		{"missing dir", func(p string) string { return filepath.Join(filepath.Dir(p), "sub", "x.sh") }, "script directory DIR/sub does not exist"},
		{"relative", func(p string) string { return "hooks/x.sh" }, `parameter script "hooks/x.sh" is not an absolute path`},
		{"no parameter", func(p string) string { return "" }, "parameter script is missing"},
		{"not executable", func(p string) string { os.Chmod(p, 0o644); return p }, "is not executable (mode 0644): chmod +x it"},
		{"directory", func(p string) string { return filepath.Dir(p) }, "is not a regular file"},
		{"no #! line", func(p string) string { os.WriteFile(p, []byte("touch "+ran+"\n"), 0o755); return p }, "cannot run it: exec format error (does it start with a #! line?)"},
	}
	s := stagetest.Serve(t, &stage{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := scriptIn(t, "hook.sh", body)
			p := tt.setup(good)
			req := request(p, nil)
			if p == "" {
				delete(req.Params, paramScript)
			}
			want := strings.ReplaceAll(tt.wantErr, "DIR", filepath.Dir(good))
			for _, verb := range []string{verbValidate, verbUp, verbDown, verbCheck} {
				err := callVerb(context.Background(), s, verb, req)
				if err == nil || !strings.Contains(err.Error(), want) || !sdk.IsKind(err, sdk.KindInvalidConfig) {
					t.Errorf("%s: error %v (kind %v), want invalid config %q", verb, err, sdk.KindOf(err), want)
				}
			}
			if _, err := os.Stat(ran); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the refused script ran")
			}
		})
	}
}

// dyingPluginEnv, set to "SCRIPT\nPIDFILE", makes the test binary a
// plugin stand-in that runs the script's up until it is killed.
const dyingPluginEnv = "SUBHOST_EXEC_TEST_DYING_PLUGIN"

func dyingPlugin(v string) {
	script, pids, _ := strings.Cut(v, "\n")
	runScript(context.Background(), hclog.NewNullLogger(), script, verbUp, request(script, map[string]string{"pids": pids}))
	os.Exit(0)
}

// TestExecPluginDeathKillsGroup kills a plugin in the middle of a call as
// the runner does (SIGKILL to the plugin's process group, which is not
// the script's): the script's group guard kills the script and its
// children.
func TestExecPluginDeathKillsGroup(t *testing.T) {
	stagetest.NoLeaks(t)
	pids := filepath.Join(t.TempDir(), "pids")
	script := scriptIn(t, "hang.sh", hangScript)
	plugin := exec.Command(os.Args[0])
	plugin.Env = append(os.Environ(), dyingPluginEnv+"="+script+"\n"+pids)
	plugin.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := plugin.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, pids, 4)
	syscall.Kill(-plugin.Process.Pid, syscall.SIGKILL)
	plugin.Wait()
	gone(t, pidsOf(t, pids))
}
