package e2e

import (
	"bufio"
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

	"github.com/subhost/subhost/internal/testbin"
	"github.com/subhost/subhost/internal/testguest"
	"github.com/subhost/subhost/sdk/stagetest"
)

// Site stages as a site uses them: its own plugins in a plugin directory
// (--plugin-dir, as /etc/subhost/plugins would be) and its own pipelines
// in a file (--pipeline-file, as /etc/subhost/pipelines/*.hcl would be).
// The Makefile builds only plugins/*, so the tests build the example site
// stage (examples/site-stage) and the test plugin netstub themselves.

// sitePlugins builds the given packages (module-relative, e.g.
// "./examples/site-stage") into a fresh plugin directory, root-owned and
// 0755 as the runner requires, each named as given in names.
func sitePlugins(t *testing.T, pkgs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, pkg := range pkgs {
		if err := testbin.Build(filepath.Join(dir, name), pkg); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// pipelineFile writes a pipeline file (root-owned, 0644) and returns it.
func pipelineFile(t *testing.T, hcl string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "site.hcl")
	if err := os.WriteFile(p, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// motdText is what the site pipeline asks motd to write.
const motdText = `Welcome to a subhost of example.org; "be nice"`

// sitePipeline is pretend-boot with the example site stage motd added
// before init.
const sitePipeline = `
pipeline "e2e-site" {
  description = "pretend-boot with a message of the day"
  home        = "/opt/sub"
  on_exit     = "down"

  stage "mount-loop" {}
  stage "net-veth" {}
  stage "motd" {
    text = "Welcome to a subhost of example.org; \"be nice\""
  }
  stage "cgroup" {}
  stage "init" {
    mode = "sysv"
  }
}
`

// siteGuest boots a busybox guest (bare ext4 image, one bridge of a test
// netns) through the e2e-site pipeline, detached, and returns its name,
// home, image and the global flags that name the site's files.
func siteGuest(t *testing.T, e *env, ns string) (name, home, img string, site []string) {
	t.Helper()
	plugins := sitePlugins(t, map[string]string{"motd": "./examples/site-stage"})
	site = []string{"--plugin-dir", plugins, "--pipeline-file", pipelineFile(t, sitePipeline)}
	r := testguest.BusyboxRoot(t, filepath.Join(t.TempDir(), "root"))
	img = testguest.Image(t, r.Dir, "none")
	name = e.name("site")
	home = e.home("DISKS=( vda:0:" + img + " )\nBRIDGES=( br0:06:a7:dd:b4:22:02 )")
	// Stop the subhost before its plugins, image and home are removed
	// (cleanups run last-registered first).
	t.Cleanup(e.stopAll)
	e.mustRun(ns, append(site, "run", "--detach", "--pipeline", "e2e-site", "--home", home, name)...)
	e.waitFor("rcS marker", 10*time.Second, func() bool { return e.guestHas(name, "/run/ready-rcS") })
	return name, home, img, site
}

// TestSiteStagePipeline runs a site's pipeline, mount-loop → net-veth →
// motd → init, with the example plugin from a site plugin directory: the
// guest boots with /etc/motd written, and stop runs motd's Down too.
func TestSiteStagePipeline(t *testing.T) {
	e := newEnv(t)
	ns, _ := e.testnet()
	n, _, img, _ := siteGuest(t, e, ns)

	if got, err := e.guestFile(n, "/etc/motd"); err != nil || got != motdText+"\n" {
		t.Errorf("/etc/motd in the guest: %q, %v; want %q", got, err, motdText+"\n")
	}
	r := e.status(n)
	var stages []string
	for _, s := range r.Stages {
		stages = append(stages, s.Name+":"+s.Status)
	}
	if want := "mount-loop:up net-veth:up motd:up cgroup:up init:up"; strings.Join(stages, " ") != want || r.State != "running" {
		t.Errorf("status: %s, stages %v; want running, %s", r.State, stages, want)
	}

	e.mustRun("", "stop", n)
	e.clean(n)
	// motd's Down ran before mount-loop's: the image no longer has it.
	out, err := exec.Command("debugfs", "-R", "stat /etc/motd", img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "not found") {
		t.Errorf("/etc/motd is still in the image after stop:\n%s", out)
	}
}

// swapPipeline replaces net-veth with the test plugin netstub.
const swapPipeline = `
pipeline "e2e-swap" {
  home    = "/opt/sub"
  on_exit = "down"

  stage "mount-loop" {}
  stage "net-veth" {
    plugin = "netstub"
  }
  stage "cgroup" {}
  stage "init" {
    mode = "sysv"
  }
}
`

// TestStageSwap replaces net-veth with a site plugin (e2e/testdata/netstub)
// by `plugin = "netstub"` in its stage block: the guest boots in the
// namespace netstub made, and stop runs netstub's Down, which deletes it.
func TestStageSwap(t *testing.T) {
	e := newEnv(t)
	plugins := sitePlugins(t, map[string]string{"netstub": "./e2e/testdata/netstub"})
	site := []string{"--plugin-dir", plugins, "--pipeline-file", pipelineFile(t, swapPipeline)}
	r := testguest.BusyboxRoot(t, filepath.Join(t.TempDir(), "root"))
	img := testguest.Image(t, r.Dir, "mbr")
	n := e.name("swap")
	h := e.home("DISKS=( vda:1:" + img + " )")
	t.Cleanup(e.stopAll)
	e.mustRun("", append(site, "run", "--detach", "--pipeline", "e2e-swap", "--home", h, n)...)

	st := e.status(n)
	if len(st.Stages) != 4 || st.Stages[1].Name != "net-veth" || st.Stages[1].Plugin != "netstub" {
		t.Errorf("stages %+v: want net-veth run by netstub", st.Stages)
	}
	// The guest's PID 1 is in /run/netns/NAME, netstub's namespace.
	guestNet, err1 := os.Stat(fmt.Sprintf("/proc/%d/ns/net", st.PID))
	netns, err2 := os.Stat("/run/netns/" + n)
	if err1 != nil || err2 != nil || !os.SameFile(guestNet, netns) {
		t.Errorf("the guest (pid %d) is not in /run/netns/%s: %v, %v", st.PID, n, err1, err2)
	}
	o, er, code := e.run("enter", n, "--", "ip", "-o", "link", "show")
	if code != 0 || !strings.Contains(o, "stub0") || strings.Contains(o, "eth0") {
		t.Errorf("links inside the guest (exit %d): want netstub's stub0 and no eth0:\n%s%s", code, o, er)
	}

	e.mustRun("", "stop", n)
	e.clean(n)
}

// stageReport is what `subhost stage` prints (internal/runner StageReport).
type stageReport struct {
	Stage   string `json:"stage"`
	Op      string `json:"op"`
	Plugin  string `json:"plugin"`
	Request struct {
		Subhost struct {
			Name string `json:"name"`
			Home string `json:"home"`
		} `json:"subhost"`
		Params map[string]string `json:"params"`
		Record struct {
			Root  string `json:"root"`
			Netns string `json:"netns"`
		} `json:"record"`
	} `json:"request"`
	Error string `json:"error"`
	Kind  string `json:"error_kind"`
}

// stageOp runs `subhost stage motd OP --pipeline PIPELINE NAME` with extra
// environment and returns the parsed report, stderr and the exit code.
func stageOp(t *testing.T, e *env, site []string, pipeline, op, name string, env ...string) (stageReport, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := e.command(ctx, "", append(site, "stage", "motd", op, "--pipeline", pipeline, name)...)
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		t.Fatalf("subhost stage motd %s: timed out", op)
	}
	var r stageReport
	// A failed call prints its report too, unless it failed before the
	// stage was reached.
	if jerr := json.Unmarshal(out, &r); jerr != nil && (err == nil || len(out) > 0) {
		t.Errorf("subhost stage motd %s printed no report (%v): %q; stderr: %s", op, jerr, out, stderr.String())
	}
	return r, stderr.String(), exitCode(err)
}

// TestStageCommandLive runs the example stage alone against a subhost
// whose guest is running, with `subhost stage motd up|check|down NAME`:
// each prints its request and result as JSON and acts on the live guest.
func TestStageCommandLive(t *testing.T) {
	e := newEnv(t)
	ns, _ := e.testnet()
	n, h, _, site := siteGuest(t, e, ns)

	r, stderr, code := stageOp(t, e, site, "e2e-site", "check", n)
	if code != 0 {
		t.Fatalf("stage motd check on a live subhost: exit %d: %s", code, stderr)
	}
	if r.Stage != "motd" || r.Op != "check" || r.Request.Subhost.Name != n || r.Request.Record.Root != filepath.Join(h, "live") ||
		r.Request.Record.Netns != "/run/netns/"+n || r.Request.Params["text"] != motdText {
		t.Errorf("check report: %+v", r)
	}
	if r, stderr, code = stageOp(t, e, site, "e2e-site", "down", n); code != 0 || r.Op != "down" {
		t.Fatalf("stage motd down: exit %d, report %+v: %s", code, r, stderr)
	}
	if e.guestHas(n, "/etc/motd") {
		t.Errorf("/etc/motd still in the guest after stage motd down")
	}
	if r, stderr, code = stageOp(t, e, site, "e2e-site", "up", n); code != 0 || r.Op != "up" {
		t.Fatalf("stage motd up: exit %d, report %+v: %s", code, r, stderr)
	}
	if got, err := e.guestFile(n, "/etc/motd"); err != nil || got != motdText+"\n" {
		t.Errorf("/etc/motd after stage motd up: %q, %v", got, err)
	}
	if st := e.status(n); st.State != "running" || st.PID == 0 {
		t.Errorf("status after the stage commands: %s pid %d, want running", st.State, st.PID)
	}
	e.mustRun("", "stop", n)
	e.clean(n)
}

// motdPipeline mounts a root and writes the motd: no guest, so the
// subhost has no supervisor and its stages can be run one at a time.
const motdPipeline = `
pipeline "e2e-motd" {
  home    = "/opt/sub"
  on_exit = "keep"

  stage "mount-loop" {}
  stage "motd" {}
}
`

// TestStageCommand runs the example stage alone with `subhost stage motd
// up|check|down NAME` against a subhost whose stages are up, then through
// a plugin started by hand with --debug and found by
// SUBHOST_REATTACH_PLUGINS.
func TestStageCommand(t *testing.T) {
	e := newEnv(t)
	plugins := sitePlugins(t, map[string]string{"motd": "./examples/site-stage"})
	site := []string{"--plugin-dir", plugins, "--pipeline-file", pipelineFile(t, motdPipeline)}
	r0 := testguest.BusyboxRoot(t, filepath.Join(t.TempDir(), "root"))
	img := testguest.Image(t, r0.Dir, "none")
	n := e.name("stg")
	h := e.home("DISKS=( vda:0:" + img + " )")
	t.Cleanup(e.stopAll)
	e.mustRun("", append(site, "run", "--detach", "--pipeline", "e2e-motd", "--home", h, n)...)
	motd := filepath.Join(h, "live/etc/motd")
	want := "Welcome to " + n + "\n"
	if got := readFile(t, motd); got != want {
		t.Errorf("%s after run: %q, want %q", motd, got, want)
	}

	r, stderr, code := stageOp(t, e, site, "e2e-motd", "check", n)
	if code != 0 {
		t.Fatalf("stage motd check: exit %d: %s", code, stderr)
	}
	if r.Stage != "motd" || r.Op != "check" || r.Plugin != filepath.Join(plugins, "motd") ||
		r.Request.Subhost.Name != n || r.Request.Record.Root != filepath.Join(h, "live") {
		t.Errorf("check report: %+v", r)
	}
	if r, stderr, code = stageOp(t, e, site, "e2e-motd", "down", n); code != 0 || r.Op != "down" {
		t.Fatalf("stage motd down: exit %d, report %+v: %s", code, r, stderr)
	}
	if _, err := os.Stat(motd); !os.IsNotExist(err) {
		t.Errorf("%s after stage motd down: %v, want it gone", motd, err)
	}
	if r, _, code = stageOp(t, e, site, "e2e-motd", "check", n); code != 1 || r.Kind != "not found" {
		t.Errorf("stage motd check after down: exit %d, kind %q, want 1 and not found (report %+v)", code, r.Kind, r)
	}
	if r, stderr, code = stageOp(t, e, site, "e2e-motd", "up", n); code != 0 || r.Op != "up" {
		t.Fatalf("stage motd up: exit %d, report %+v: %s", code, r, stderr)
	}
	if got := readFile(t, motd); got != want {
		t.Errorf("%s after stage motd up: %q, want %q", motd, got, want)
	}

	// --debug: the plugin serves in test mode and prints the variable.
	dbg := exec.Command(filepath.Join(plugins, "motd"), "--debug")
	stdout, err := dbg.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var dbgErr stagetest.SyncBuffer
	dbg.Stderr = &dbgErr
	dbg.Env = append(os.Environ(), "SUBHOST_LOG_LEVEL=debug")
	if err := dbg.Start(); err != nil {
		t.Fatal(err)
	}
	var dbgExit error
	dbgDone := make(chan struct{})
	go func() { dbgExit = dbg.Wait(); close(dbgDone) }()
	t.Cleanup(func() {
		select {
		case <-dbgDone:
		default:
			dbg.Process.Kill()
			<-dbgDone
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var reattach string
	for reattach == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("motd --debug ended without a reattach line; stderr: %s", dbgErr.String())
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "export SUBHOST_REATTACH_PLUGINS='"); ok {
				reattach = strings.TrimSuffix(v, "'")
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("motd --debug printed no reattach line; stderr: %s", dbgErr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	// Make the installed plugin one the runner refuses to start: what
	// then answers can only be the debug process.
	installed := filepath.Join(plugins, "motd")
	if err := os.Chmod(installed, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code = stageOp(t, e, site, "e2e-motd", "check", n); code == 0 || !strings.Contains(stderr, "writable by group or others") {
		t.Errorf("stage motd check with a group-writable plugin: exit %d, %s; want it refused", code, stderr)
	}
	// Twice: the debug process serves one runner after another.
	for range 2 {
		r, stderr, code = stageOp(t, e, site, "e2e-motd", "check", n, "SUBHOST_REATTACH_PLUGINS="+reattach)
		if code != 0 || r.Op != "check" || r.Request.Record.Root != filepath.Join(h, "live") {
			t.Errorf("stage motd check with the debug plugin: exit %d, report %+v: %s", code, r, stderr)
		}
	}
	select {
	case <-dbgDone:
		t.Errorf("motd --debug ended after serving: %v; stderr: %s", dbgExit, dbgErr.String())
	default:
	}
	if err := os.Chmod(installed, 0o755); err != nil {
		t.Fatal(err)
	}
	// The debug process served that call: once it is gone, the same
	// command has nothing to talk to.
	dbg.Process.Signal(syscall.SIGINT)
	select {
	case <-dbgDone:
		if dbgExit != nil {
			t.Errorf("motd --debug after SIGINT: %v; stderr: %s", dbgExit, dbgErr.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("motd --debug did not end on SIGINT")
	}
	if _, stderr, code = stageOp(t, e, site, "e2e-motd", "check", n, "SUBHOST_REATTACH_PLUGINS="+reattach); code == 0 || !strings.Contains(stderr, "reattach") {
		t.Errorf("stage motd check with the debug plugin gone: exit %d, %s; want a failure to reattach", code, stderr)
	}

	e.mustRun("", "stop", n)
	e.clean(n)
}
