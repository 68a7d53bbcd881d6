package pluginhost

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/subhost/subhost/internal/testbin"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

func testHost(t *testing.T, out *stagetest.SyncBuffer) (*Host, string) {
	t.Helper()
	stagetest.RequireRoot(t)
	dir := t.TempDir()
	return &Host{
		Dirs:      []string{filepath.Join(dir, "plugins")},
		SocketDir: filepath.Join(dir, "sockets"),
		Logger:    hclog.New(&hclog.LoggerOptions{Name: "subhost", Level: hclog.Trace, Output: out}),
		LogLevel:  "debug",
	}, dir
}

// startTestStage builds the test stage into dir's plugins and starts it
// as stage "web".
func startTestStage(t *testing.T, h *Host, dir string) *Plugin {
	t.Helper()
	bin := filepath.Join(dir, "plugins", "teststage")
	if err := testbin.Build(bin, "./internal/teststage"); err != nil {
		t.Fatal(err)
	}
	p, err := h.Start(context.Background(), "web", bin, "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A stage plugin started by the host answers over gRPC, its log lines
// reach the host's logger under the stage's name, and Kill leaves
// neither its process nor its socket.
func TestStartServesAndKillLeavesNothing(t *testing.T) {
	var out stagetest.SyncBuffer
	h, dir := testHost(t, &out)
	t.Setenv("GOMAXPROCS", "7") // the caller's, which must not leak in
	p := startTestStage(t, h, dir)
	d, err := sdk.DescribeContext(context.Background(), p.Stage())
	if err != nil || d.Name != "teststage" {
		t.Errorf("Describe through the plugin: %+v, %v", d, err)
	}
	req := &sdk.Request{Subhost: sdk.Subhost{Name: "t1"}, Stage: "web", Params: map[string]string{"behavior": "invalid"}}
	if err := p.Stage().Validate(context.Background(), req); sdk.KindOf(err) != sdk.KindInvalidConfig {
		t.Errorf("Validate on request to fail: %v", err)
	}
	socks, _ := os.ReadDir(h.SocketDir)
	if len(socks) != 1 || p.Exited() {
		t.Errorf("while it runs: sockets %v, exited %v", socks, p.Exited())
	}
	// Its environment is the fixed one, with one P: none of the
	// caller's.
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.proc.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimRight(string(environ), "\x00"), "\x00")
	if want := h.fixedEnv(); !reflect.DeepEqual(got, want) || !slices.Contains(got, "GOMAXPROCS=1") {
		t.Errorf("the plugin's environment is %q, want %q, with GOMAXPROCS=1", got, want)
	}
	p.Kill()
	if !p.Exited() {
		t.Error("Kill returned with the plugin still running")
	}
	if socks, _ := os.ReadDir(h.SocketDir); len(socks) != 0 {
		t.Errorf("Kill left %v in the socket directory", socks)
	}
	time.Sleep(50 * time.Millisecond) // the log forwarding ends with the pipe
	if log := out.String(); !strings.Contains(log, "subhost.web.teststage: ") || strings.Contains(log, "exited by itself") {
		t.Errorf("no plugin log line under the stage's name, or its kill taken for a crash:\n%s", log)
	}
}

// What does not speak the protocol is refused in one line that says so,
// and leaves nothing running.
func TestStartRefusesWhatIsNotAStage(t *testing.T) {
	var out stagetest.SyncBuffer
	h, dir := testHost(t, &out)
	h.StartTimeout = 300 * time.Millisecond
	for _, tc := range []struct{ name, script, want string }{
		{"says-hello", "echo hello", `it answered "hello": the plugin did not speak the subhost stage protocol`},
		{"exits", "exit 3", "it exited (exit status 3) before it answered: the plugin did not speak"},
		{"silent", "exec sleep 10", "no answer in 300ms: the plugin did not speak"},
		{"other-version", "echo '1|99|unix|" + h.SocketDir + "/x|grpc|'", "it speaks stage protocol version 99, this subhost 1"},
		{"netrpc", "echo '1|1|unix|" + h.SocketDir + "/x|netrpc|'", `it serves go-plugin's "netrpc" protocol, not grpc`},
		{"elsewhere", "echo '1|1|unix|/tmp/x|grpc|'", "it serves on unix /tmp/x, not a unix socket in " + h.SocketDir},
		// A name that leaves the directory: the socket is removed as root.
		{"escapes", "echo '1|1|unix|" + h.SocketDir + "/../x|grpc|'", "it serves on unix " + h.SocketDir + "/../x, not a unix socket in"},
		{"below", "echo '1|1|unix|" + h.SocketDir + "/sub/x|grpc|'", "not a unix socket in"},
	} {
		bin := filepath.Join(dir, "plugins", tc.name)
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+tc.script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		p, err := h.Start(context.Background(), tc.name, bin, "")
		if err == nil {
			p.Kill()
			t.Errorf("%s: started", tc.name)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "start plugin "+bin+": ") {
			t.Errorf("%s: %q, want one line with %q", tc.name, msg, tc.want)
		}
	}
	// The one that exited by itself is in the log as such.
	time.Sleep(50 * time.Millisecond)
	if log := out.String(); !strings.Contains(log, "subhost.exits: plugin process exited by itself") || !strings.Contains(log, "status=\"exit status 3\"") {
		t.Errorf("the plugin that exited is not logged so:\n%s", log)
	}
}

func TestParseLogLine(t *testing.T) {
	level, msg, args, ok := parseLogLine([]byte(`{"@level":"warn","@message":"slow","@module":"init","@timestamp":"2026-12-06T23:00:00.000000Z","took":3,"call":"up"}`))
	if !ok || level != hclog.Warn || msg != "slow" || !reflect.DeepEqual(args, []any{"@module", "init", "call", "up", "took", float64(3)}) {
		t.Errorf("JSON line: %v %q %v %v", level, msg, args, ok)
	}
	for _, line := range []string{"panic: boom", `{"not":"hclog"}`, "", "{broken"} {
		if _, _, _, ok := parseLogLine([]byte(line)); ok {
			t.Errorf("%q taken for a log line", line)
		}
	}
}

func TestParseReattach(t *testing.T) {
	got, err := ParseReattach(`{"net-veth":{"Protocol":"grpc","ProtocolVersion":1,"Pid":42,"Test":true,"Addr":{"Network":"unix","String":"/tmp/plugin1"}}}`)
	if err != nil || got["net-veth"].Addr.String != "/tmp/plugin1" || got["net-veth"].Pid != 42 {
		t.Errorf("ParseReattach: %+v, %v", got, err)
	}
	for _, bad := range []string{`{"a":{"Protocol":"grpc","Addr":{"Network":"udp","String":"x"}}}`, `{"a":{"Protocol":"netrpc","Addr":{"Network":"unix","String":"x"}}}`, `[`} {
		if _, err := ParseReattach(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// A plugin's standard error is read to its end whatever it writes: a line
// longer than any buffer is logged in pieces, and the lines after it as
// usual.
func TestForwardLogReadsEverything(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var out stagetest.SyncBuffer
	done := make(chan struct{})
	go func() {
		forwardLog(hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: &out}), r)
		close(done)
	}()
	long := strings.Repeat("x", 3<<20)
	if _, err := w.WriteString(long + "\n" + `{"@level":"info","@message":"after the long line","k":"v"}` + "\npanic: boom\ngoroutine 1\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("forwardLog did not read to the end")
	}
	log := out.String()
	for _, want := range []string{"[INFO]  after the long line: k=v", "[ERROR] panic: boom", "[ERROR] goroutine 1"} {
		if !strings.Contains(log, want) {
			t.Errorf("no %q in the log", want)
		}
	}
	if got := strings.Count(log, "x"); got < 3<<20 {
		t.Errorf("the long line came through with %d of its %d bytes", got, 3<<20)
	}
}

// A plugin that cannot die (here frozen by a cgroup v1 freezer, as one
// asleep on a hung file server would be) does not hang Kill: it is
// logged and left to its waiter, which reaps it once it dies.
func TestKillDoesNotWaitForeverForAPluginThatCannotDie(t *testing.T) {
	freezer := "/sys/fs/cgroup/freezer"
	if _, err := os.Stat(filepath.Join(freezer, "freezer.state")); err != nil && !os.IsNotExist(err) {
		t.Skip(err)
	}
	if _, err := os.Stat(filepath.Join(freezer, "cgroup.procs")); err != nil {
		t.Skip("no cgroup v1 freezer")
	}
	var out stagetest.SyncBuffer
	h, dir := testHost(t, &out)
	p := startTestStage(t, h, dir)
	cg := filepath.Join(freezer, fmt.Sprintf("pluginhost-test-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	defer func() {
		os.WriteFile(filepath.Join(cg, "freezer.state"), []byte("THAWED"), 0)
		<-p.proc.done
		for i := 0; i < 100 && os.Remove(cg) != nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(p.proc.cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cg, "freezer.state"), []byte("FROZEN"), 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if b, _ := os.ReadFile(filepath.Join(cg, "freezer.state")); strings.TrimSpace(string(b)) == "FROZEN" {
			break
		} else if i == 500 {
			t.Fatalf("the plugin is not frozen: %s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer func(d time.Duration) { killWait = d }(killWait)
	killWait = 200 * time.Millisecond
	done := make(chan struct{})
	go func() { p.Kill(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Kill still waits for a plugin that cannot die")
	}
	if log := out.String(); !strings.Contains(log, "the plugin does not die of SIGKILL") {
		t.Errorf("no log line about the plugin left behind:\n%s", log)
	}
}
