package ansible

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/subhost/subhost/internal/testbin"
	"github.com/subhost/subhost/sdk/stagetest"
)

// moduleHost is one host for the collection's modules, run directly by
// Python as Ansible runs them (a file of arguments, a JSON result): the
// real subhost CLI with its own state and etc directories, and a pipeline
// "p" of one teststage stage, which boots no guest and touches nothing on
// the host, so that run, status and stop are real and cheap.
type moduleHost struct {
	dir      string
	bin      string // the subhost the modules run: a wrapper of the built one
	etc      string
	states   string
	calls    string // what the wrapper was asked, a line per call
	failStop string // while this file exists, the wrapper's stop fails
}

func newModuleHost(t *testing.T) *moduleHost {
	t.Helper()
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	built := filepath.Join(dir, "bin")
	for _, b := range []struct{ out, pkg string }{
		{"subhost", "./cmd/subhost-front"},
		{"plugins/subhost-cli", "./cmd/subhost"},
		{"plugins/subhost-monitor", "./cmd/subhost-monitor"},
		{"plugins/teststage", "./internal/teststage"},
	} {
		if err := testbin.Build(filepath.Join(built, b.out), b.pkg); err != nil {
			t.Fatal(err)
		}
	}
	h := &moduleHost{dir: dir, etc: filepath.Join(dir, "etc"), states: filepath.Join(dir, "run"),
		calls: filepath.Join(dir, "calls"), failStop: filepath.Join(dir, "fail-stop")}
	os.MkdirAll(filepath.Join(h.etc, "autostart"), 0o755)
	pipeline := filepath.Join(dir, "p.hcl")
	os.WriteFile(pipeline, []byte(fmt.Sprintf("pipeline \"p\" {\n  home = %q\n  stage \"a\" {\n    plugin = \"teststage\"\n  }\n}\n", dir)), 0o644)
	h.bin = filepath.Join(dir, "subhost")
	wrapper := fmt.Sprintf(`#!/bin/sh
echo "$*" >>%[1]s
if [ "$1" = stop ] && [ -e %[2]s ]; then
	echo "subhost: stop $2: failed on request" >&2
	exit 1
fi
SUBHOST_ETC_DIR=%[3]s exec %[4]s --state-dir %[5]s --pipeline-file %[6]s --log-dir %[7]s "$@"
`, h.calls, h.failStop, h.etc, filepath.Join(built, "subhost"), h.states, pipeline, filepath.Join(dir, "logs"))
	if err := os.WriteFile(h.bin, []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		entries, _ := os.ReadDir(h.states)
		for _, e := range entries {
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				exec.Command(h.bin, "stop", "--force", e.Name()).Run()
			}
		}
	})
	return h
}

// home is a subhost's home in this host's directory.
func (h *moduleHost) home(name string) string { return filepath.Join(h.dir, name) }

// module runs a module of the collection with args (and Ansible's
// internal ones: _ansible_check_mode, _ansible_diff) and returns its
// result. The subhost calls it made are in result["calls"].
func (h *moduleHost) module(t *testing.T, module string, args map[string]any) map[string]any {
	t.Helper()
	os.Remove(h.calls)
	full := map[string]any{"subhost_bin": h.bin}
	for k, v := range args {
		full[k] = v
	}
	in, err := json.Marshal(map[string]any{"ANSIBLE_MODULE_ARGS": full})
	if err != nil {
		t.Fatal(err)
	}
	argsFile := filepath.Join(h.dir, "args.json")
	os.WriteFile(argsFile, in, 0o600)
	collections, _ := filepath.Abs(".")
	// Debian's python3, which has ansible-core (as the sanity test).
	cmd := exec.Command("/usr/bin/python3", filepath.Join(collectionDir, "plugins/modules", module+".py"), argsFile)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+collections)
	out, _ := cmd.Output()
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%s %v: not a module result: %v\n%s", module, args, err, out)
	}
	calls, _ := os.ReadFile(h.calls)
	res["calls"] = strings.TrimSpace(string(calls))
	return res
}

// subhost runs the subhost module, which must not fail.
func (h *moduleHost) subhost(t *testing.T, args map[string]any) map[string]any {
	t.Helper()
	res := h.module(t, "subhost", args)
	if res["failed"] == true {
		t.Fatalf("subhost %v failed: %v\ncalls:\n%s", args, res["msg"], res["calls"])
	}
	return res
}

// made says whether the module's run of subhost included a call starting
// with prefix ("stop", "run --detach", "disable").
func made(res map[string]any, prefix string) bool {
	for _, l := range strings.Split(res["calls"].(string), "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func warnings(res map[string]any) string {
	var out []string
	for _, w := range asList(res["warnings"]) {
		out = append(out, fmt.Sprint(w))
	}
	return strings.Join(out, "\n")
}

func asList(v any) []any { l, _ := v.([]any); return l }

// note is the NOTE the running subhost was brought up with.
func note(res map[string]any) string {
	st, _ := res["status"].(map[string]any)
	cfg, _ := st["config"].(map[string]any)
	vars, _ := cfg["vars"].(map[string]any)
	v, _ := vars["NOTE"].(map[string]any)
	return fmt.Sprint(v["words"])
}

func TestModuleSubhost(t *testing.T) {
	h := newModuleHost(t)
	task := func(name string, extra map[string]any) map[string]any {
		args := map[string]any{"name": name, "pipeline": "p", "home": h.home(name)}
		for k, v := range extra {
			args[k] = v
		}
		return args
	}
	cfg := func(note string) map[string]any { return map[string]any{"NOTE": note} }

	// A restart that a run leaves pending (without restart_on_change, or
	// because its stop failed after the config was written) is still due
	// at the next run, which changes no config itself.
	t.Run("pending restart", func(t *testing.T) {
		if res := h.subhost(t, task("pend", map[string]any{"config": cfg("one")})); !made(res, "run --detach") || note(res) != "[one]" {
			t.Fatalf("first run: %v\n%s", res, res["calls"])
		}
		res := h.subhost(t, task("pend", map[string]any{"config": cfg("two")}))
		if res["changed"] != true || res["needs_restart"] != true || made(res, "stop") {
			t.Errorf("a config change without restart_on_change: %v\n%s", res, res["calls"])
		}
		res = h.subhost(t, task("pend", map[string]any{"config": cfg("two")}))
		if res["changed"] != false || res["needs_restart"] != true {
			t.Errorf("the next run forgot the pending restart: changed %v, needs_restart %v", res["changed"], res["needs_restart"])
		}
		res = h.subhost(t, task("pend", map[string]any{"config": cfg("two"), "restart_on_change": true}))
		if res["changed"] != true || res["needs_restart"] != false || !made(res, "stop") || !made(res, "run --detach") || note(res) != "[two]" {
			t.Errorf("restart_on_change did not do the pending restart: changed %v, needs_restart %v, runs with NOTE=%s\n%s",
				res["changed"], res["needs_restart"], note(res), res["calls"])
		}
		res = h.subhost(t, task("pend", map[string]any{"config": cfg("two"), "restart_on_change": true}))
		if res["changed"] != false || made(res, "stop") {
			t.Errorf("a restarted subhost restarts again: %v\n%s", res, res["calls"])
		}

		// The config is written, then the stop fails: the task fails;
		// the next one restarts it.
		os.WriteFile(h.failStop, nil, 0o644)
		res = h.module(t, "subhost", task("pend", map[string]any{"config": cfg("three"), "restart_on_change": true}))
		os.Remove(h.failStop)
		if res["failed"] != true {
			t.Fatalf("a failing stop did not fail the task: %v", res)
		}
		res = h.subhost(t, task("pend", map[string]any{"config": cfg("three"), "restart_on_change": true}))
		if res["changed"] != true || !made(res, "run --detach") || note(res) != "[three]" {
			t.Errorf("after a failed stop the next run did not restart: changed %v, runs with NOTE=%s\n%s", res["changed"], note(res), res["calls"])
		}
	})

	// A config that subhost refuses (here writable by others) is no
	// reason to fail stopping the subhost or withdrawing it, and the
	// module replaces it with one of root's, but keeps nothing from it
	// that the playbook does not set itself.
	t.Run("refused config", func(t *testing.T) {
		name := "refd"
		path := filepath.Join(h.home(name), "config")
		h.subhost(t, task(name, map[string]any{"config": cfg("x"), "enabled": true}))
		os.Chmod(path, 0o666)
		res := h.subhost(t, task(name, map[string]any{"state": "stopped", "enabled": false}))
		if res["changed"] != true || !made(res, "stop") || !made(res, "disable") || !strings.Contains(warnings(res), "writable by group or others") {
			t.Errorf("state=stopped, enabled=false with a refused config: %v\n%s", res, res["calls"])
		}

		res = h.subhost(t, task(name, map[string]any{"config": cfg("x"), "state": "stopped"}))
		if fi, err := os.Lstat(path); err != nil || fi.Mode() != 0o644 || res["changed"] != true {
			t.Errorf("a refused config that sets what the playbook sets is not replaced: %v, %v; result %v", fi, err, res)
		}

		os.WriteFile(path, []byte("NOTE=x\nEXTRA=planted\n"), 0o666)
		os.Chmod(path, 0o666)
		res = h.module(t, "subhost", task(name, map[string]any{"config": cfg("x"), "state": "stopped"}))
		if data, _ := os.ReadFile(path); res["failed"] != true || !strings.Contains(fmt.Sprint(res["msg"]), "it sets EXTRA, which the playbook does not") ||
			string(data) != "NOTE=x\nEXTRA=planted\n" {
			t.Errorf("a refused config's other variables were carried, or the task did not say why not: %v; the file holds %q", res["msg"], data)
		}
		res = h.subhost(t, task(name, map[string]any{"config": cfg("y"), "config_exclusive": true, "state": "stopped"}))
		if data, _ := os.ReadFile(path); res["changed"] != true || strings.Contains(string(data), "EXTRA") || !strings.Contains(string(data), "NOTE=y") {
			t.Errorf("config_exclusive did not replace a refused config: %v; the file holds %q", res, data)
		}
		if fi, err := os.Lstat(path); err != nil || fi.Mode() != 0o644 {
			t.Errorf("the replaced config: %v, %v", fi, err)
		}

		// A symlink is replaced, not followed, and what it leads to is
		// not shown in the diff.
		secret := filepath.Join(h.dir, "secret")
		os.WriteFile(secret, []byte("TOKEN=hidden\n"), 0o600)
		os.Remove(path)
		os.Symlink(secret, path)
		res = h.subhost(t, task(name, map[string]any{"config": cfg("z"), "config_exclusive": true, "state": "stopped", "_ansible_diff": true}))
		if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() || strings.Contains(fmt.Sprint(res["diff"]), "hidden") {
			t.Errorf("a symlinked config: %v, %v; diff %v", fi, err, res["diff"])
		}
		if data, _ := os.ReadFile(secret); string(data) != "TOKEN=hidden\n" {
			t.Errorf("the symlink's target was written: %q", data)
		}
	})

	// A config with a comment in Latin-1, which subhost accepts (bash
	// does), is shown in the diff, not a crash of the module.
	t.Run("latin-1 comment", func(t *testing.T) {
		name := "lat1"
		path := filepath.Join(h.home(name), "config")
		h.subhost(t, task(name, map[string]any{"config": cfg("x"), "state": "stopped"}))
		os.WriteFile(path, []byte("# Gr\xf6\xdfe\nNOTE=x\n"), 0o644)
		res := h.subhost(t, task(name, map[string]any{"config": cfg("y"), "state": "stopped", "_ansible_diff": true}))
		if data, _ := os.ReadFile(path); res["changed"] != true || !strings.Contains(string(data), "NOTE=y") {
			t.Errorf("a config with a Latin-1 comment: %v; the file holds %q", res, data)
		}
	})

	// One enrolment or state that subhost cannot read is a warning, not
	// the failure of every enabled task (or subhost_info) on the host.
	t.Run("unreadable enrolment", func(t *testing.T) {
		bak := filepath.Join(h.etc, "autostart", "web1.bak")
		os.WriteFile(bak, []byte("order=1\n"), 0o644)
		t.Cleanup(func() { os.Remove(bak) })
		res := h.subhost(t, task("enr", map[string]any{"enabled": true, "order": 5, "state": "stopped"}))
		if res["changed"] != true || !made(res, "enable") || !strings.Contains(warnings(res), "web1.bak") {
			t.Errorf("enabled=true beside a bad enrolment file: %v\n%s", res, res["calls"])
		}
		if res := h.subhost(t, task("enr", map[string]any{"enabled": true, "order": 5, "state": "stopped"})); res["changed"] != false {
			t.Errorf("enabled=true again: changed\n%s", res["calls"])
		}

		// Its own enrolment unreadable: withdrawn all the same.
		own := filepath.Join(h.etc, "autostart", "enr")
		os.WriteFile(own, []byte("order=many\n"), 0o644)
		res = h.subhost(t, task("enr", map[string]any{"enabled": false, "state": "stopped"}))
		if _, err := os.Lstat(own); res["changed"] != true || !os.IsNotExist(err) {
			t.Errorf("enabled=false with its own enrolment unreadable: %v (file: %v)\n%s", res, err, res["calls"])
		}
	})
	t.Run("unreadable state", func(t *testing.T) {
		h.subhost(t, task("seen", map[string]any{"config": cfg("s")}))
		os.MkdirAll(filepath.Join(h.states, "newer"), 0o700)
		os.WriteFile(filepath.Join(h.states, "newer", "state.json"), []byte(`{"schema": 99, "name": "newer"}`), 0o600)
		t.Cleanup(func() { os.RemoveAll(filepath.Join(h.states, "newer")) })
		res := h.module(t, "subhost_info", map[string]any{})
		var listed []string
		for _, s := range asList(res["subhosts"]) {
			listed = append(listed, fmt.Sprint(s.(map[string]any)["name"]))
		}
		if res["failed"] == true || !slices.Contains(listed, "seen") || !strings.Contains(warnings(res), "newer") {
			t.Errorf("subhost_info beside an unreadable state: %v", res)
		}

		// An enrolled one: autostart list leaves it out too.
		enrolment := filepath.Join(h.etc, "autostart", "newer")
		os.WriteFile(enrolment, []byte("order=1\n"), 0o644)
		t.Cleanup(func() { os.Remove(enrolment) })
		res = h.subhost(t, task("seen", map[string]any{"enabled": true}))
		if res["changed"] != true || !made(res, "enable") || !strings.Contains(warnings(res), "newer") {
			t.Errorf("enabled=true beside an enrolled subhost with an unreadable state: %v\n%s", res, res["calls"])
		}
	})
}
