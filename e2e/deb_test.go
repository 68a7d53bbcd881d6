package e2e

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/subhost/subhost/internal/testguest"
)

// buildDeb builds the package from the test's binaries with the script
// `make deb` runs, and returns its path.
func buildDeb(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("bash", "../scripts/mkdeb.sh", binDir, out, "1.2.3-test")
	msg, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mkdeb.sh: %v\n%s", err, msg)
	}
	deb := strings.TrimSpace(string(msg))
	if filepath.Base(deb) != "subhost_1.2.3+test_"+debArch(t)+".deb" {
		t.Fatalf("mkdeb.sh made %q", deb)
	}
	return deb
}

func debArch(t *testing.T) string {
	out, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// TestDebPackage: the package holds the binary and the old script names,
// every plugin and subhost-init, the init script (LSB header, valid sh),
// its defaults (a conffile), both systemd units, man pages in section 8;
// lintian reports no error; the unpacked binary finds its plugins beside
// it in usr/lib/subhost/plugins; the unpacked init script starts, reports
// and stops an enrolled subhost against a scratch etc directory, the
// pre-removal script of an upgrade leaves the running guest alone, and
// that of a removal stops it.
func TestDebPackage(t *testing.T) {
	e := newEnv(t)
	deb := buildDeb(t)
	contents, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{
		"usr/bin/subhost", "usr/bin/pretend-boot -> subhost", "usr/bin/control -> subhost",
		"usr/lib/subhost/plugins/mount-loop", "usr/lib/subhost/plugins/mount-overlay", "usr/lib/subhost/plugins/net-veth",
		"usr/lib/subhost/plugins/init", "usr/lib/subhost/plugins/subhost-init", "usr/lib/subhost/plugins/subhost-launch",
		"usr/lib/subhost/plugins/subhost-cli", "usr/lib/subhost/plugins/subhost-monitor",
		"etc/init.d/subhost", "etc/default/subhost",
		"usr/lib/systemd/system/subhost.service", "usr/lib/systemd/system/subhost@.service",
		"usr/share/man/man8/subhost.8.gz", "usr/share/man/man8/subhost-run.8.gz", "usr/share/man/man8/subhost-autostart-start.8.gz",
		"usr/share/doc/subhost/copyright", "usr/share/lintian/overrides/subhost",
	} {
		if !strings.Contains(string(contents), " ./"+f+"\n") {
			t.Errorf("the package lacks /%s", f)
		}
	}
	conffiles, _ := exec.Command("dpkg-deb", "-I", deb, "conffiles").Output()
	if !strings.Contains(string(conffiles), "/etc/default/subhost\n") {
		t.Errorf("/etc/default/subhost is not a conffile: %q", conffiles)
	}

	t.Run("lintian", func(t *testing.T) {
		if _, err := exec.LookPath("lintian"); err != nil {
			if os.Getenv("SUBHOST_TEST_REQUIRE_ROOT") == "1" {
				t.Fatal("lintian is not installed (make deps)")
			}
			t.Skip("lintian is not installed (make deps)")
		}
		// lintian leaves a cache file (mldbm-elf-*) in its TMPDIR.
		lint := exec.Command("lintian", deb)
		lint.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
		out, _ := lint.CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "E: ") {
				t.Errorf("lintian: %s", l)
			}
		}
	})

	pkg := filepath.Join(t.TempDir(), "pkg")
	if out, err := exec.Command("dpkg-deb", "-x", deb, pkg).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v: %s", err, out)
	}
	ctrl := filepath.Join(t.TempDir(), "DEBIAN")
	if out, err := exec.Command("dpkg-deb", "-e", deb, ctrl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v: %s", err, out)
	}
	initScript := filepath.Join(pkg, "etc/init.d/subhost")
	if out, err := exec.Command("sh", "-n", initScript).CombinedOutput(); err != nil {
		t.Errorf("the init script is not valid sh: %s", out)
	}
	if b, _ := os.ReadFile(initScript); !strings.Contains(string(b), "### BEGIN INIT INFO") || !strings.Contains(string(b), "Required-Start:    $network $remote_fs $syslog") {
		t.Errorf("the init script has no LSB header with Required-Start")
	}

	bin := filepath.Join(pkg, "usr/bin/subhost")
	etc := filepath.Join(t.TempDir(), "etc")
	out, err := exec.Command(bin, "--etc-dir", etc, "plugins").CombinedOutput()
	if err != nil || !strings.Contains(string(out), filepath.Join(pkg, "usr/lib/subhost/plugins/net-veth")) {
		t.Errorf("the unpacked subhost does not list its plugins from usr/lib/subhost/plugins: %v\n%s", err, out)
	}

	// The init script, against a scratch etc directory and state.
	g := e.newGuest("deb", nil)
	if out, err := exec.Command(bin, "--etc-dir", etc, "enable", "--home", g.home, "--order", "5", g.name).CombinedOutput(); err != nil {
		t.Fatalf("enable: %v: %s", err, out)
	}
	defaults := filepath.Join(t.TempDir(), "defaults")
	// No STOP_TIMEOUT: the stop passes an empty --timeout=, and the
	// guest gets its own shutdown_timeout.
	os.WriteFile(defaults, []byte("DAEMON="+bin+"\nSUBHOST_ETC_DIR="+etc+"\nSUBHOST_OPTS=\"--state-dir "+e.state+"\"\n"), 0o644)
	script := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command("nsenter", append([]string{"--net=" + testguest.NetnsPath(g.ns), "--", "sh", initScript}, args...)...)
		cmd.Env = append(os.Environ(), "SUBHOST_DEFAULTS="+defaults)
		out, err := cmd.CombinedOutput()
		return string(out), exitCode(err)
	}
	if out, code := script("status"); code != 3 {
		t.Errorf("init script status before start: exit %d, want 3 (not running)\n%s", code, out)
	}
	if out, code := script("start"); code != 0 {
		t.Fatalf("init script start: exit %d\n%s", code, out)
	}
	if r := e.status(g.name); r.State != "running" {
		t.Errorf("after init script start %s is %s", g.name, r.State)
	}
	if out, code := script("status"); code != 0 || !strings.Contains(out, g.name) {
		t.Errorf("init script status: exit %d, want 0 listing %s\n%s", code, g.name, out)
	}
	pid := e.status(g.name).PID
	cmd := exec.Command("sh", filepath.Join(ctrl, "prerm"), "upgrade", "1.2.4")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("prerm upgrade: %v: %s", err, out)
	}
	if r := e.status(g.name); r.State != "running" || r.PID != pid {
		t.Errorf("prerm upgrade touched the guest: %s, pid %d (was %d)", r.State, r.PID, pid)
	}
	if out, code := script("stop"); code != 0 {
		t.Errorf("init script stop: exit %d\n%s", code, out)
	}
	e.clean(g.name)
	if out, code := script("status"); code != 3 {
		t.Errorf("init script status after stop: exit %d, want 3\n%s", code, out)
	}

	// The pre-removal script of a removal stops it, found through the
	// defaults' SUBHOST_OPTS (this test's --state-dir). PATH leads to a
	// deb-systemd-invoke that does nothing: the host's own service is
	// not the test's.
	if out, code := script("start"); code != 0 {
		t.Fatalf("init script start again: exit %d\n%s", code, out)
	}
	fakebin := t.TempDir()
	os.WriteFile(filepath.Join(fakebin, "deb-systemd-invoke"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
	cmd = exec.Command("nsenter", "--net="+testguest.NetnsPath(g.ns), "--", "sh", filepath.Join(ctrl, "prerm"), "remove")
	cmd.Env = append(os.Environ(), "SUBHOST_DEFAULTS="+defaults, "PATH="+fakebin+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("prerm remove: %v: %s", err, out)
	}
	if r := e.status(g.name); r.State != "stopped" {
		t.Errorf("after prerm remove %s is %s", g.name, r.State)
	}
	e.clean(g.name)
}

// TestStateSchema1Stop: a state.json in the committed schema 1 layout (as
// the binary of a previous package wrote it) is read by this binary,
// shown (its guest is gone: failed), and stopped: every stage's Down runs
// from it and the state goes.
func TestStateSchema1Stop(t *testing.T) {
	e := newEnv(t)
	name := e.name("compt")
	scratch := t.TempDir()
	data, err := os.ReadFile("../internal/state/testdata/schema1-running.json")
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("/work/wt-hostops/bin/plugins", filepath.Join(binDir, "plugins"), "/tmp/fixkHsg", scratch, "fixsub", name)
	var st map[string]any
	if err := json.Unmarshal([]byte(r.Replace(string(data))), &st); err != nil {
		t.Fatal(err)
	}
	// The stages' own states are opaque bytes (base64): they name the
	// subhost and its paths too.
	for _, s := range st["stages"].([]any) {
		stage := s.(map[string]any)
		raw, _ := base64.StdEncoding.DecodeString(stage["state"].(string))
		stage["state"] = base64.StdEncoding.EncodeToString([]byte(r.Replace(string(raw))))
	}
	out, _ := json.Marshal(st)
	if err := os.MkdirAll(filepath.Join(e.state, name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.state, name, "state.json"), out, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep := e.status(name); rep.State != "failed" || rep.Pipeline != "pretend-boot" || len(rep.Stages) != 3 {
		t.Errorf("the schema 1 state reads as %+v, want failed (its guest is gone) with 3 stages", rep)
	}
	e.mustRun("", "stop", name)
	if _, err := os.Stat(filepath.Join(e.state, name, "state.json")); !os.IsNotExist(err) {
		t.Errorf("stop left the state: %v", err)
	}
}

// TestAutostartUnitSurvivesPartialStarts: `autostart start` exits 1 or 2
// when one subhost did not come up or one enrolment file is bad, having
// started the others; subhost.service must count that as started, or
// systemd kills the supervisors of every guest that did come up and never
// runs its ExecStop at shutdown.
func TestAutostartUnitSurvivesPartialStarts(t *testing.T) {
	b, err := os.ReadFile("../packaging/deb/subhost.service")
	if err != nil {
		t.Fatal(err)
	}
	ok := map[string]bool{"0": true}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "SuccessExitStatus="); found {
			for _, code := range strings.Fields(v) {
				ok[code] = true
			}
		}
		if v, found := strings.CutPrefix(line, "ExecStart="); found && strings.HasPrefix(v, "-") {
			ok["1"], ok["2"] = true, true
		}
	}
	if !ok["1"] || !ok["2"] {
		t.Errorf("subhost.service fails when autostart start exits 1 or 2 (a subhost that did not come up, a bad enrolment file)")
	}
}

// TestAutostartUnitStopTimeout: the unit's stop passes STOP_TIMEOUT as one
// word, --timeout=VALUE, which systemd keeps as one (empty) argument when
// STOP_TIMEOUT is empty; "--timeout ${STOP_TIMEOUT}" would then leave
// --timeout to take the next option as its value.
func TestAutostartUnitStopTimeout(t *testing.T) {
	b, err := os.ReadFile("../packaging/deb/subhost.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "ExecStop="); found && !slices.Contains(strings.Fields(v), "--timeout=${STOP_TIMEOUT}") {
			t.Errorf("subhost.service stops with %q: want --timeout=${STOP_TIMEOUT}, one word", v)
		}
	}
}

// TestPrermRemove: on removal the pre-removal script stops the subhosts
// as the init script does, with /etc/default/subhost's SUBHOST_OPTS (a
// site's --state-dir), SUBHOST_ETC_DIR, STOP_TIMEOUT and STOP_OPTS, and
// when that stop fails it fails the removal, saying so, rather than let
// dpkg delete the plugins under guests still up. On upgrade it runs
// nothing. A fake subhost records what it was asked; a fake
// deb-systemd-invoke keeps the host's own subhost.service out of it.
func TestPrermRemove(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "calls")
	fakebin := filepath.Join(dir, "bin")
	os.Mkdir(fakebin, 0o755)
	fake := "#!/bin/sh\necho \"$(basename \"$0\") etc=$SUBHOST_ETC_DIR $*\" >>" + record + "\nexit ${FAKE_RC:-0}\n"
	daemon := filepath.Join(dir, "daemon")
	for _, f := range []string{daemon, filepath.Join(fakebin, "deb-systemd-invoke")} {
		if err := os.WriteFile(f, []byte(fake), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A subhost on PATH is never the one to run: that would be the host's.
	os.WriteFile(filepath.Join(fakebin, "subhost"), []byte("#!/bin/sh\necho \"subhost from PATH $*\" >>"+record+"\nexit 0\n"), 0o755)
	defaults := filepath.Join(dir, "defaults")
	os.WriteFile(defaults, []byte("DAEMON="+daemon+"\nSUBHOST_ETC_DIR=/srv/etc\nSUBHOST_OPTS=\"--state-dir /srv/run -v\"\nSTOP_TIMEOUT=7s\nSTOP_OPTS=\"--parallel 2\"\n"), 0o644)
	prerm := func(rc string, args ...string) (string, string, int) {
		t.Helper()
		os.Remove(record)
		cmd := exec.Command("/bin/sh", append([]string{"../packaging/deb/prerm"}, args...)...)
		cmd.Env = []string{"PATH=" + fakebin + ":/usr/bin:/bin", "SUBHOST_DEFAULTS=" + defaults, "FAKE_RC=" + rc}
		out, err := cmd.CombinedOutput()
		calls, _ := os.ReadFile(record)
		return string(calls), string(out), exitCode(err)
	}

	calls, out, code := prerm("0", "remove")
	want := "daemon etc=/srv/etc --state-dir /srv/run -v autostart stop --timeout=7s --parallel 2\ndeb-systemd-invoke etc=/srv/etc stop subhost.service\n"
	if code != 0 || calls != want {
		t.Errorf("prerm remove: exit %d, ran\n%s\nwant exit 0, having run\n%s%s", code, calls, want, out)
	}
	calls, out, code = prerm("1", "remove")
	if want := "daemon etc=/srv/etc --state-dir /srv/run -v autostart stop --timeout=7s --parallel 2\n"; code == 0 || calls != want {
		t.Errorf("prerm remove with a failing stop: exit %d, ran\n%s\nwant a failure, having run only\n%s", code, calls, want)
	}
	if !strings.Contains(out, "subhost: the package is not removed: `subhost --state-dir /srv/run -v autostart stop` failed (exit 1)") {
		t.Errorf("prerm remove with a failing stop says %q", out)
	}
	for _, args := range [][]string{{"upgrade", "1.2.4"}, {"failed-upgrade", "1.2.4"}, {"deconfigure", "in-favour", "x", "1"}} {
		if calls, out, code := prerm("1", args...); code != 0 || calls != "" {
			t.Errorf("prerm %s: exit %d, ran %q; want 0, nothing run\n%s", args[0], code, calls, out)
		}
	}
}
