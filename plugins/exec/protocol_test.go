package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/subhost/subhost/sdk"
)

func TestExecEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"greeting":   "GREETING",
		"hosts-file": "HOSTS_FILE",
		"hosts_file": "HOSTS_FILE",
		"Mixed9":     "MIXED9",
		"a.b":        "A_B",
	} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExecScriptEnv(t *testing.T) {
	req := &sdk.Request{
		Subhost: sdk.Subhost{Name: "web1", Home: "/opt/sub/web1", Vars: map[string]sdk.Var{
			"DISKS":       {Words: []string{"vda:1:/d/a.raw", "vdb:0:/d/b.raw"}, IsArray: true},
			"DNS_ADDRESS": {Words: []string{"192.0.2.10"}},
		}},
		Stage:  "dns",
		Params: map[string]string{"script": "/etc/hooks/dns.sh", "hosts-file": "/etc/hosts.sub"},
		Record: sdk.BootRecord{Root: "/opt/sub/web1/live", Netns: "/run/netns/web1", GuestPID: 4242},
	}
	want := []string{
		"PATH=" + scriptPath,
		"SUBHOST_HOME=/opt/sub/web1",
		"SUBHOST_NAME=web1",
		"SUBHOST_NETNS=/run/netns/web1",
		"SUBHOST_PARAM_HOSTS_FILE=/etc/hosts.sub",
		"SUBHOST_PARAM_SCRIPT=/etc/hooks/dns.sh",
		"SUBHOST_PID=4242",
		"SUBHOST_ROOT=/opt/sub/web1/live",
		"SUBHOST_STAGE=dns",
		"SUBHOST_VAR_DISKS=vda:1:/d/a.raw vdb:0:/d/b.raw",
		"SUBHOST_VAR_DNS_ADDRESS=192.0.2.10",
	}
	if got := scriptEnv(req); !reflect.DeepEqual(got, want) {
		t.Errorf("scriptEnv:\n got %q\nwant %q", got, want)
	}
	// Before any stage is up (validate), the record's facts are empty but
	// set, for scripts under `set -u`.
	req.Record = sdk.BootRecord{}
	env := strings.Join(scriptEnv(req), "\n") + "\n"
	for _, v := range []string{"SUBHOST_ROOT=\n", "SUBHOST_NETNS=\n", "SUBHOST_PID=\n"} {
		if !strings.Contains(env, v) {
			t.Errorf("empty record: no %q in %q", v, env)
		}
	}
}

func TestExecCheckEnv(t *testing.T) {
	tests := []struct {
		name    string
		req     sdk.Request
		wantErr string
	}{
		{"ok", sdk.Request{Params: map[string]string{"script": "/x", "a-b": "1"}}, ""},
		{"collision", sdk.Request{Params: map[string]string{"script": "/x", "a-b": "1", "a_b": "2"}},
			`parameters "a-b" and "a_b" would both be SUBHOST_PARAM_A_B: rename one`},
		{"nul param", sdk.Request{Params: map[string]string{"script": "/x", "a": "x\x00y"}},
			"parameter a holds a NUL byte"},
		{"nul var", sdk.Request{Subhost: sdk.Subhost{ConfigFile: "/h/config", Vars: map[string]sdk.Var{"X": {Words: []string{"a\x00"}, Origin: "/h/config:3"}}}},
			"config /h/config:3: variable X holds a NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkEnv(&tt.req)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !sdk.IsKind(err, sdk.KindInvalidConfig) {
				t.Errorf("error %v (kind %v), want invalid config %q", err, sdk.KindOf(err), tt.wantErr)
			}
		})
	}
}

func TestExecStdin(t *testing.T) {
	req := &sdk.Request{Subhost: sdk.Subhost{Name: "web1"}, Stage: "dns", State: []byte(`{"n": 1}`),
		Others: []sdk.Neighbour{{Name: "web2", Status: "running"}}}
	b, err := stdinFor(verbUp, req)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	// The state is the JSON the script printed, not base64.
	if got["verb"] != "up" || got["stage"] != "dns" || !reflect.DeepEqual(got["state"], map[string]any{"n": 1.0}) ||
		!reflect.DeepEqual(got["others"], []any{map[string]any{"name": "web2", "status": "running"}}) {
		t.Errorf("stdin %s", b)
	}
	req.State = []byte("not json")
	if b, _ = stdinFor(verbDown, req); strings.Contains(string(b), `"state"`) {
		t.Errorf("a state that is not JSON was passed on: %s", b)
	}
}

func TestExecParseOutput(t *testing.T) {
	good := []struct {
		out   string
		extra map[string]string
		state string
	}{
		{"", nil, ""},
		{" \n\t", nil, ""},
		{`{}`, nil, ""},
		{`{"extra": {"hook": "was-here"}}` + "\n", map[string]string{"hook": "was-here"}, ""},
		{`{"extra": {}, "state": {"a": [1, 2]}}`, nil, `{"a": [1, 2]}`},
		{`{"state": null}`, nil, ""},
		{`{"state": "plain"}`, nil, `"plain"`},
	}
	for _, g := range good {
		res, err := parseOutput([]byte(g.out))
		if err != nil {
			t.Errorf("%q: %v", g.out, err)
			continue
		}
		if !reflect.DeepEqual(res.Extra, g.extra) || string(res.State) != g.state {
			t.Errorf("%q: extra %v state %q, want %v %q", g.out, res.Extra, res.State, g.extra, g.state)
		}
	}
	bad := []struct{ out, want string }{
		{"hello world\n", `it printed "hello world"`},
		{`{"extra": {"a": "b"}`, "which is not one JSON object"},
		{`{"extra": {}} {"state": 1}`, `it printed more after its JSON object ("{\"state\": 1}")`},
		{`{"extra": {}} trailing`, "it printed more after its JSON object"},
		{`{"exta": {}}`, `its JSON has the key "exta"`},
		{`{"extra": ["a"]}`, `its "extra" is "[\"a\"]", not an object`},
		{`{"extra": {"port": 8080}}`, `its "extra" key "port" is "8080", not a string`},
		{`{"extra": {"": "x"}}`, `empty key`},
		{`{"extra": {"a\nrunning": "x"}}`, `key "a\nrunning" has a character that is not printable, at byte 1`},
		{`{"extra": {"\u001b[2Jx": "x"}}`, `has a character that is not printable, at byte 0`},
		{`[1]`, `it printed "[1]"`},
		{strings.Repeat("x", 100), `x"...:`},
	}
	for _, b := range bad {
		_, err := parseOutput([]byte(b.out))
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%q: error %v, want %q", b.out, err, b.want)
			continue
		}
		if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), outputShape) && !strings.Contains(err.Error(), "empty key") && !strings.Contains(err.Error(), "not printable") {
			t.Errorf("%q: error %q is not one line saying what is wanted", b.out, err)
		}
	}
}

func TestExecStderrLog(t *testing.T) {
	var logged []string
	s := &stderrLog{log: captureLogger(&logged)}
	s.Write([]byte("first\r\nsec"))
	s.Write([]byte("ond\n\n   \n"))
	s.Write([]byte(strings.Repeat("y", maxLine+10) + "\nlast without newline"))
	s.Flush()
	if len(logged) != 4 || logged[0] != "first" || logged[1] != "second" ||
		logged[2] != strings.Repeat("y", maxLine)+"..." || logged[3] != "last without newline" {
		t.Errorf("logged %q", logged)
	}
	if s.Last() != "last without newline" {
		t.Errorf("last %q", s.Last())
	}
}
