package goplugin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/subhost/subhost/internal/testbin"
	"github.com/subhost/subhost/sdk"
)

// The plugin side of go-plugin's protocol is sdk.Main's own (sdk/serve.go);
// these tests hold it to go-plugin's client, as the runner uses it.

var stageBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "goplugin-test-")
	if err == nil {
		stageBin = filepath.Join(dir, "teststage")
		err = testbin.Build(stageBin, "./internal/teststage")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// client starts the test stage as the runner does and returns it, with
// the client's log.
func client(t *testing.T, socketDir string) (*plugin.Client, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          PluginSet(nil),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Cmd:              exec.Command(stageBin),
		Logger:           hclog.New(&hclog.LoggerOptions{Output: &log, Level: hclog.Trace}),
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: socketDir},
	})
	t.Cleanup(c.Kill)
	return c, &log
}

// TestServedToGoPluginsClient: go-plugin's client starts the plugin,
// dispenses the stage, calls it, finds it healthy, and at Kill the plugin
// shuts down on its controller's word (exit 0, not killed), its socket
// gone, with no warning, error or unimplemented service in the client's
// log.
func TestServedToGoPluginsClient(t *testing.T) {
	socketDir := t.TempDir()
	c, log := client(t, socketDir)
	rpc, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	if err := rpc.Ping(); err != nil {
		t.Errorf("health check: %v", err)
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	stage := raw.(sdk.Stage)
	if d, err := sdk.DescribeContext(context.Background(), stage); err != nil || d.Name != "teststage" {
		t.Errorf("describe: %+v, %v", d, err)
	}
	req := &sdk.Request{Stage: "a", Subhost: sdk.Subhost{Name: "web1"}, Params: map[string]string{"log": filepath.Join(t.TempDir(), "calls")}}
	if err := stage.Validate(context.Background(), req); err != nil {
		t.Errorf("validate: %v", err)
	}
	res, err := stage.Up(context.Background(), req)
	if err != nil || res.Record.Extra["a"] != "up" {
		t.Errorf("up: %+v, %v", res, err)
	}
	req.Params["behavior"] = "fail"
	if _, err := stage.Up(context.Background(), req); sdk.KindOf(err) != sdk.KindConflict {
		t.Errorf("up asked to fail: %v, want a conflict", err)
	}
	if _, err := sdk.Update(context.Background(), stage, req); err != sdk.ErrUnsupported {
		t.Errorf("update of a stage without it: %v", err)
	}
	start := time.Now()
	c.Kill()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Kill took %s: the plugin did not shut down when asked", d)
	}
	if !strings.Contains(log.String(), "plugin process exited") || strings.Contains(log.String(), "signal: killed") {
		t.Errorf("the plugin did not exit by itself:\n%s", log)
	}
	for _, bad := range []string{"[WARN]", "[ERROR]", "Unimplemented"} {
		if strings.Contains(log.String(), bad) {
			t.Errorf("the client logged a %s:\n%s", bad, log)
		}
	}
	if entries, _ := os.ReadDir(socketDir); len(entries) > 0 {
		t.Errorf("left in the socket directory: %v", entries)
	}
}

// TestRefusesWhatItCannotServe: run by hand (no cookie), or by a client of
// another stage protocol version, the plugin says so in one line and
// serves nothing.
func TestRefusesWhatItCannotServe(t *testing.T) {
	cookie := sdk.MagicCookieKey + "=" + sdk.MagicCookieValue
	for _, tc := range []struct {
		name string
		env  []string
		code int
		want string
	}{
		{"no cookie", nil, 2, "a subhost stage plugin; run it through subhost"},
		{"another version", []string{cookie, "PLUGIN_PROTOCOL_VERSIONS=2,3"}, 1, "speaks stage protocol version(s) 2,3; this plugin speaks 1"},
		{"mTLS", []string{cookie, "PLUGIN_PROTOCOL_VERSIONS=1", "PLUGIN_CLIENT_CERT=x"}, 1, "mTLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(stageBin)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tc.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if cmd.ProcessState.ExitCode() != tc.code || len(lines) != 1 || !strings.Contains(lines[0], tc.want) || stdout.Len() > 0 {
				t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and one line with %q", err, cmd.ProcessState.ExitCode(), stdout.String(), stderr.String(), tc.code, tc.want)
			}
		})
	}
}

// TestDebugMode: `PLUGIN --debug` serves until interrupted and prints the
// value of SUBHOST_REATTACH_PLUGINS, which go-plugin's client attaches with.
func TestDebugMode(t *testing.T) {
	cmd := exec.Command(stageBin, "--debug")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var value string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, v, ok := strings.Cut(sc.Text(), "export "+sdk.ReattachEnv+"='"); ok {
			value = strings.TrimSuffix(v, "'")
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	rcs, err := ParseReattach(value)
	if err != nil || rcs["teststage"] == nil || rcs["teststage"].Pid != cmd.Process.Pid {
		t.Fatalf("reattach value %q: %v, %v", value, rcs, err)
	}
	var raw map[string]sdk.Reattach
	json.Unmarshal([]byte(value), &raw)
	socket := raw["teststage"].Addr.String
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          PluginSet(nil),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Reattach:         rcs["teststage"],
		Logger:           hclog.NewNullLogger(),
	})
	rpc, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	stage, err := rpc.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	if d := stage.(sdk.Stage).Describe(); d.Name != "teststage" {
		t.Errorf("describe through the reattached client: %+v", d)
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGINT: %v, want exit 0", err)
	}
	if _, err := os.Stat(socket); !os.IsNotExist(err) {
		t.Errorf("socket %s left: %v", socket, err)
	}
}
