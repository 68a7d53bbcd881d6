package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/sdk"
)

// goodInit is a root-owned executable every test machine has.
const goodInit = "/bin/true"

func validRequest() *sdk.Request {
	return &sdk.Request{
		Subhost: sdk.Subhost{Name: "guest1", Home: "/opt/sub/guest1"},
		Stage:   "init",
		Params:  map[string]string{"init_binary": goodInit},
		Record: sdk.BootRecord{
			Root:    "/opt/sub/guest1/live",
			Netns:   "/run/netns/guest1",
			Devices: []sdk.Device{{GuestName: "vda", Major: 7, Minor: 0}, {GuestName: "vda1", Major: 7, Minor: 1, ReadOnly: true}},
		},
	}
}

func TestValidateBadInput(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *sdk.Request)
		want   string
	}{
		{"unknown param", func(r *sdk.Request) { r.Params["shutdown-timeout"] = "3s" }, `unknown parameter "shutdown-timeout"`},
		{"bad mode", func(r *sdk.Request) { r.Params["mode"] = "systemd" }, `mode "systemd"`},
		{"relative shell", func(r *sdk.Request) { r.Params["shell"] = "bash" }, `shell "bash"`},
		{"bad timeout", func(r *sdk.Request) { r.Params["shutdown_timeout"] = "soon" }, `shutdown_timeout "soon"`},
		{"zero timeout", func(r *sdk.Request) { r.Params["shutdown_timeout"] = "0s" }, `shutdown_timeout "0s"`},
		{"negative timeout", func(r *sdk.Request) { r.Params["shutdown_timeout"] = "-3s" }, `shutdown_timeout "-3s"`},
		{"bad term", func(r *sdk.Request) { r.Params["term"] = "x y" }, `term "x y"`},
		{"root of another user namespace", func(r *sdk.Request) { r.Record.Userns, r.Record.RootUserns = "/run/u", "/run/v" }, `the root belongs to user namespace "/run/v"`},
		{"missing init binary", func(r *sdk.Request) { r.Params["init_binary"] = "/nonexistent/subhost-init" }, "no such file"},
		{"relative init binary", func(r *sdk.Request) { r.Params["init_binary"] = "subhost-init" }, "absolute path"},
		{"init binary a directory", func(r *sdk.Request) { r.Params["init_binary"] = "/" }, "not an executable file"},
		{"init binary not executable", func(r *sdk.Request) { r.Params["init_binary"] = "/etc/passwd" }, "not an executable file"},
		{"empty name", func(r *sdk.Request) { r.Subhost.Name = "" }, "subhost name is empty"},
		{"long name", func(r *sdk.Request) { r.Subhost.Name = strings.Repeat("a", 65) }, "is too long (65 characters, at most 32)"},
		{"name with a dot", func(r *sdk.Request) { r.Subhost.Name = "devices.allow" }, `subhost name "devices.allow": only letters, digits`},
		{"name of a cgroup file", func(r *sdk.Request) { r.Subhost.Name = "tasks" }, `subhost name "tasks" is reserved (it is the name of a cgroup control file)`},
		{"relative root", func(r *sdk.Request) { r.Record.Root = "live" }, `root "live"`},
		{"relative netns", func(r *sdk.Request) { r.Record.Netns = "ns" }, `netns "ns"`},
		{"relative console", func(r *sdk.Request) { r.Console = "pts/3" }, `console "pts/3"`},
		{"device with a slash", func(r *sdk.Request) { r.Record.Devices[0].GuestName = "../sda" }, `device "../sda": not a plain /dev name`},
		{"device named console", func(r *sdk.Request) { r.Record.Devices[0].GuestName = "console" }, "standard /dev entry"},
		{"device twice", func(r *sdk.Request) { r.Record.Devices[1].GuestName = "vda" }, `device "vda" given twice`},
		{"device without numbers", func(r *sdk.Request) { r.Record.Devices[0].Major = 0 }, "no major:minor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := validRequest()
			tt.change(req)
			err := (&stage{}).Validate(context.Background(), req)
			if err == nil {
				t.Fatalf("Validate accepted it")
			}
			if !sdk.IsKind(err, sdk.KindInvalidConfig) {
				t.Errorf("error kind %v, want invalid config: %v", sdk.KindOf(err), err)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line containing %q", err, tt.want)
			}
		})
	}
}

func TestValidateGood(t *testing.T) {
	req := validRequest()
	if err := (&stage{}).Validate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	// Validate before the stages ahead have run: an empty record.
	req.Record = sdk.BootRecord{}
	if err := (&stage{}).Validate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

func TestParams(t *testing.T) {
	req := validRequest()
	req.Params["mode"] = "shell"
	req.Params["shell"] = "/bin/zsh"
	req.Params["shutdown_timeout"] = "90"
	p, err := parseParams(req)
	if err != nil {
		t.Fatal(err)
	}
	if p.shutdownTimeout != 90*time.Second {
		t.Errorf("shutdown_timeout 90 = %v", p.shutdownTimeout)
	}
	argv := strings.Join(guestArgv(p), " ")
	if want := "/sbin/subhost-init --mode shell --shell /bin/zsh --shutdown-timeout 1m30s"; argv != want {
		t.Errorf("argv %q, want %q", argv, want)
	}
	env := strings.Join(guestEnv(p), " ")
	if want := "container=subhost PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=linux HOME=/root"; env != want {
		t.Errorf("env %q, want %q", env, want)
	}
	// Defaults.
	p, err = parseParams(&sdk.Request{Params: map[string]string{"init_binary": goodInit}})
	if err != nil {
		t.Fatal(err)
	}
	if p.mode != "sysv" || p.shell != "/bin/bash" || p.shutdownTimeout != 30*time.Second || p.term != "linux" {
		t.Errorf("defaults: %+v", p)
	}
}

// TestNoDevicePolicyRefused: a boot record without a device policy (a
// pipeline without the cgroup stage) boots only with DEVICE_POLICY=none.
func TestNoDevicePolicyRefused(t *testing.T) {
	req := validRequest()
	if err := checkDevicePolicy(req); sdk.KindOf(err) != sdk.KindInvalidConfig || !strings.Contains(err.Error(), "no device policy") || !strings.Contains(err.Error(), "DEVICE_POLICY=none") {
		t.Errorf("no device policy: %v", err)
	}
	req.Subhost.Vars = map[string]sdk.Var{"DEVICE_POLICY": {Words: []string{"none"}}}
	if err := checkDevicePolicy(req); err != nil {
		t.Errorf("DEVICE_POLICY=none: %v", err)
	}
	req = validRequest()
	req.Record.DevicePolicy = []string{"cgroup2-bpf"}
	if err := checkDevicePolicy(req); err != nil {
		t.Errorf("with a device policy: %v", err)
	}
}

// TestValidateRefusesLauncher: a missing subhost-launch, or one that is
// not root's alone, fails Validate, before any stage has made anything.
func TestValidateRefusesLauncher(t *testing.T) {
	dir := t.TempDir()
	defer func(old func() (string, error)) { launcherDir = old }(launcherDir)
	launcherDir = func() (string, error) { return dir, nil }
	err := (&stage{}).Validate(context.Background(), validRequest())
	if err == nil || !strings.Contains(err.Error(), "guest launcher") || !strings.Contains(err.Error(), "make build") {
		t.Errorf("Validate without subhost-launch: %v", err)
	}
	path := filepath.Join(dir, launcherName)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	err = (&stage{}).Validate(context.Background(), validRequest())
	if err == nil || !strings.Contains(err.Error(), "not writable by group or others") {
		t.Errorf("Validate with a subhost-launch anyone may write: %v", err)
	}
}

// TestPlainWordKeepsThePatterns checks plainWord against the regexps it
// replaced, for the terminal type and the guest device names.
func TestPlainWordKeepsThePatterns(t *testing.T) {
	term := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+_-]*$`)
	dev := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	inputs := []string{"", "linux", "xterm-256color", "vt100+x", "a.b_c-d", "-x", ".x", "_x", "+x", "x y", "x/y",
		"vda", "vda1", "sdb", "é", "x\x00", "x\n", strings.Repeat("a", 63), strings.Repeat("a", 64), "a+b"}
	for _, s := range inputs {
		if got, want := plainWord(s, ".+_-", len(s)), term.MatchString(s); got != want {
			t.Errorf("term %q: plainWord %v, regexp %v", s, got, want)
		}
		if got, want := plainWord(s, "._-", maxDevName), dev.MatchString(s); got != want {
			t.Errorf("device %q: plainWord %v, regexp %v", s, got, want)
		}
	}
}
