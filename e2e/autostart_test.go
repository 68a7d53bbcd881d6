package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/testguest"
	"github.com/subhost/subhost/sdk/stagetest"
)

// autoHost is a test's host for autostart: a scratch --etc-dir (never the
// machine's /etc/subhost) and one network namespace with bridge br0 that
// every subhost of the test plugs into (MACs 06:a7:dd:b5:S:N, and b6 for the extra bridges).
type autoHost struct {
	e   *env
	etc string
	ns  string
	s   int // the test network's subnet number, for MACs
	n   int // subhosts made, for their MACs
}

func newAutoHost(e *env) *autoHost {
	e.t.Helper()
	h := &autoHost{e: e, etc: filepath.Join(e.t.TempDir(), "etc")}
	h.ns, h.s = e.testnet()
	return h
}

// subhost prepares a pretend-boot subhost on br0 (and on the extra
// bridges) and returns its name and home; mod may add to its root.
func (h *autoHost) subhost(tag string, mod func(*testguest.Root), bridges ...string) (string, string) {
	h.e.t.Helper()
	h.n++
	name := h.e.name(tag)
	root := testguest.BusyboxRoot(h.e.t, filepath.Join(h.e.t.TempDir(), "root"))
	if mod != nil {
		mod(root)
	}
	img := testguest.Image(h.e.t, root.Dir, "mbr")
	br := fmt.Sprintf("br0:06:a7:dd:b5:%02x:%02x", h.s, h.n)
	for _, b := range bridges {
		br += fmt.Sprintf(" %s:06:a7:dd:b6:%02x:%02x", b, h.s, h.n)
	}
	return name, h.e.home(fmt.Sprintf("DISKS=( vda:1:%s )\nBRIDGES=( %s )", img, br))
}

// run runs subhost --etc-dir ETC ARGS in the test's namespace.
func (h *autoHost) run(args ...string) (string, string, int) {
	h.e.t.Helper()
	return h.e.inNet(h.ns, append([]string{"--etc-dir", h.etc}, args...)...)
}

func (h *autoHost) enable(name, home string, extra ...string) {
	h.e.t.Helper()
	h.enableIn("pretend-boot", name, home, extra...)
}

// enableIn enrols name with pipeline.
func (h *autoHost) enableIn(pipeline, name, home string, extra ...string) {
	h.e.t.Helper()
	args := append([]string{"enable", "--pipeline", pipeline, "--home", home}, extra...)
	if o, er, code := h.run(append(args, name)...); code != 0 {
		h.e.t.Fatalf("enable %s: exit %d: %s%s", name, code, o, er)
	}
}

// meetScript is an exec stage whose up says the subhost's boot has begun
// and waits until every subhost its parameter "peers" names has said so,
// for 10 s at most; its down takes the word back.
const meetScript = `#!/bin/sh
case $1 in
down) rm -f "$SUBHOST_PARAM_DIR/$SUBHOST_NAME"; exit 0 ;;
up) ;;
*) exit 0 ;;
esac
: >"$SUBHOST_PARAM_DIR/$SUBHOST_NAME"
for i in $(seq 200); do
	missing=
	for p in $SUBHOST_PARAM_PEERS; do [ -e "$SUBHOST_PARAM_DIR/$p" ] || missing=$p; done
	[ -z "$missing" ] && exit 0
	sleep 0.05
done
echo "$missing did not begin its boot within 10 s of $SUBHOST_NAME's" >&2
exit 1
`

// meetingPipeline writes pipeline "meeting" into the host's etc
// directory: pretend-boot with a stage before init where the boots of
// peers wait for each other (meetScript).
func (h *autoHost) meetingPipeline(peers ...string) {
	t := h.e.t
	t.Helper()
	hooks := hookDir(t, map[string]string{"meet.sh": meetScript})
	met := t.TempDir()
	dir := filepath.Join(h.etc, "pipelines")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hcl := fmt.Sprintf(`pipeline "meeting" {
  home    = "/opt/sub"
  on_exit = "down"
  stage "mount-loop" {}
  stage "net-veth" {}
  stage "meet" {
    plugin  = "exec"
    script  = %q
    dir     = %q
    peers   = %q
    timeout = "30s"
  }
  stage "cgroup" {}
  stage "init" {
    mode = "sysv"
  }
}
`, filepath.Join(hooks, "meet.sh"), met, strings.Join(peers, " "))
	if err := os.WriteFile(filepath.Join(dir, "meeting.hcl"), []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
}

// times reads, from a subhost's state, when its run began and when its
// guest started.
func (h *autoHost) times(name string) (began, guest time.Time) {
	h.e.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.e.state, name, "state.json"))
	if err != nil {
		h.e.t.Fatalf("%s has no state: %v", name, err)
	}
	var st struct {
		Started      time.Time `json:"started"`
		GuestStarted time.Time `json:"guest_started"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		h.e.t.Fatal(err)
	}
	return st.Started, st.GuestStarted
}

// TestAutostartOrder: orders 10, 20, 30 start one after the other (each
// run begins after the previous guest started), two of equal order start
// in parallel (each run began before the other's guest started), status
// shows started and the enrolment; autostart stop stops them all, in
// reverse order, a guest that ignores SIGPWR included, and a second start
// of running subhosts changes nothing.
func TestAutostartOrder(t *testing.T) {
	e := newEnv(t)
	h := newAutoHost(e)
	a, ha := h.subhost("aa", nil)
	b, hb := h.subhost("ab", nil)
	c, hc := h.subhost("ac", func(r *testguest.Root) {
		// rc 0 never ends: the power off asked by SIGPWR never comes.
		r.Script(0, "K01hang", "sleep 1000")
	})
	p1, hp1 := h.subhost("ap", nil)
	p2, hp2 := h.subhost("ap", nil)
	// The two of equal order meet before their guests start: each one's
	// boot waits (10 s at most, then fails) in a stage of its own until
	// the other's has begun, so two runs begun together overlap however
	// fast the machine boots them, and two begun one after the other
	// cannot.
	h.meetingPipeline(p1, p2)
	h.enable(a, ha, "--order", "20", "--group", "web")
	h.enable(b, hb, "--order", "10")
	h.enable(c, hc, "--order", "30")
	h.enableIn("meeting", p1, hp1, "--order", "25")
	h.enableIn("meeting", p2, hp2, "--order", "25")
	if _, err := os.Stat(filepath.Join("/etc/subhost/autostart", a)); err == nil {
		t.Fatalf("enable --etc-dir wrote under /etc/subhost")
	}

	o, er, code := h.run("autostart", "start", "--parallel", "2")
	if code != 0 {
		t.Fatalf("autostart start: exit %d\n%s%s", code, o, er)
	}
	order := []string{b, a, p1, c} // p2 checked against p1
	for i := 1; i < len(order); i++ {
		_, prevGuest := h.times(order[i-1])
		began, _ := h.times(order[i])
		if !began.After(prevGuest) {
			t.Errorf("%s began at %s, before %s's guest started (%s): not in order", order[i], began, order[i-1], prevGuest)
		}
	}
	b1, g1 := h.times(p1)
	b2, g2 := h.times(p2)
	if !b1.Before(g2) || !b2.Before(g1) {
		t.Errorf("equal orders did not start in parallel: %s began %s, guest %s; %s began %s, guest %s", p1, b1, g1, p2, b2, g2)
	}
	var r struct {
		State     string `json:"state"`
		Started   string `json:"started"`
		Autostart *struct {
			Order int    `json:"order"`
			Group string `json:"group"`
		} `json:"autostart"`
		Restarts *int `json:"restarts"`
	}
	out, _, _ := h.run("status", "--json", a)
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if ts, err := time.Parse(time.RFC3339Nano, r.Started); err != nil || r.State != "running" || r.Autostart == nil ||
		r.Autostart.Order != 20 || r.Autostart.Group != "web" || r.Restarts == nil || *r.Restarts != 0 || ts.IsZero() {
		t.Errorf("status --json %s: %s", a, out)
	}

	// Idempotent: running subhosts are left alone.
	pidBefore := e.status(b).PID
	if o, er, code := h.run("autostart", "start"); code != 0 || !strings.Contains(o, "already running") {
		t.Errorf("second autostart start: exit %d\n%s%s", code, o, er)
	}
	if pid := e.status(b).PID; pid != pidBefore {
		t.Errorf("second autostart start restarted %s (pid %d, was %d)", b, pid, pidBefore)
	}

	o, er, code = h.run("autostart", "stop", "--timeout", "3s", "--parallel", "1")
	if code != 0 {
		t.Fatalf("autostart stop: exit %d\n%s%s", code, o, er)
	}
	var stopped []string
	for _, l := range strings.Split(strings.TrimSpace(o), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[2] == "stopped" {
			stopped = append(stopped, f[1])
		}
	}
	if len(stopped) != 5 || stopped[0] != c || stopped[3] != a || stopped[4] != b {
		t.Errorf("stop order %v, want %s (30), the two of 25, %s (20), %s (10)", stopped, c, a, b)
	}
	for _, n := range []string{a, b, c, p1, p2} {
		e.clean(n)
	}
	if o, _, code := h.run("disable", a); code != 0 || !strings.Contains(o, "disabled") {
		t.Errorf("disable: exit %d: %s", code, o)
	}
	if _, err := os.Stat(filepath.Join(h.etc, "autostart", a)); !os.IsNotExist(err) {
		t.Errorf("disable left the enrolment: %v", err)
	}
}

// TestAutostartBridgeLateAndBrokenSubhost: a subhost whose bridge appears
// 2 s after autostart start began is waited for and starts; one whose
// image is missing fails, is reported, and does not keep the others from
// starting; the exit status is 1.
func TestAutostartBridgeLateAndBrokenSubhost(t *testing.T) {
	e := newEnv(t)
	h := newAutoHost(e)
	late, hl := h.subhost("late", nil, "brlate")
	ok, hok := h.subhost("ok", nil)
	broken, hb := h.subhost("brk", nil)
	os.WriteFile(filepath.Join(hb, "config"), []byte("DISKS=( vda:1:/nonexistent/missing.raw )\n"), 0o644)
	h.enable(broken, hb, "--order", "1")
	h.enable(late, hl, "--order", "2")
	h.enable(ok, hok, "--order", "3")

	start := e.startIn(h.ns, "--etc-dir", h.etc, "autostart", "start")
	time.Sleep(2 * time.Second)
	testguest.Bridge(t, h.ns, "brlate", "")
	code := start.wait(t, 60*time.Second)
	if code != 1 {
		t.Errorf("autostart start with a broken subhost: exit %d, want 1\n%s%s", code, start.Stdout.String(), start.Stderr.String())
	}
	errOut := start.Stderr.String()
	if !strings.Contains(errOut, broken) || !strings.Contains(errOut, "missing.raw") {
		t.Errorf("the broken subhost's failure is not reported clearly:\n%s", errOut)
	}
	for _, n := range []string{late, ok} {
		if r := e.status(n); r.State != "running" {
			t.Errorf("%s is %s after autostart start, want running", n, r.State)
		}
	}
	if r := e.status(broken); r.State != "stopped" {
		t.Errorf("the broken subhost is %s, want stopped (rolled back)", r.State)
	}
	if o, er, code := h.run("autostart", "stop", "--timeout", "5s"); code != 0 {
		t.Errorf("autostart stop: exit %d\n%s%s", code, o, er)
	}
	e.clean(late)
	e.clean(ok)
}

// TestAutostartBadInput: bad flags and bad enrolment files are one clear
// line and exit 2; nothing is written.
func TestAutostartBadInput(t *testing.T) {
	stagetest.RequireRoot(t)
	etc := t.TempDir()
	run := func(args ...string) (string, int) {
		cmd := exec.Command(subhostBin(), append([]string{"--etc-dir", etc, "--state-dir", t.TempDir()}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), exitCode(err)
	}
	badHome := t.TempDir()
	os.WriteFile(filepath.Join(badHome, "config"), []byte("RESTART=maybe\n"), 0o644)
	for _, args := range [][]string{
		{"enable", "--home", badHome, "a"},
		{"enable", "--order", "x", "a"},
		{"enable", "--home", "/h", "--group", "-bad", "a"},
		{"enable", "--delay", "-1s", "a"},
		{"enable", "--pipeline", "nope", "a"},
		{"enable", "bad/name"},
		{"autostart", "start", "--parallel", "0"},
	} {
		if out, code := run(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, out)
		}
	}
	if names, _ := os.ReadDir(filepath.Join(etc, "autostart")); len(names) != 0 {
		t.Errorf("refused enables wrote %v", names)
	}
	os.MkdirAll(filepath.Join(etc, "autostart"), 0o755)
	os.WriteFile(filepath.Join(etc, "autostart", "typo"), []byte("ordr=3\n"), 0o644)
	out, code := run("autostart", "list")
	if code != 2 || !strings.Contains(out, filepath.Join(etc, "autostart", "typo")+`:1: unknown key "ordr"`) {
		t.Errorf("autostart list with a bad file: exit %d, want 2 and a line naming file, line and key:\n%s", code, out)
	}
}
