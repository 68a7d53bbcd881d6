package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/guestexit"
)

func TestRefusesWhenNotPID1(t *testing.T) {
	bin := binary(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "must run as PID 1"},
		{[]string{"--mode", "shell"}, "must run as PID 1"},
		{[]string{"--mode", "bogus"}, `--mode "bogus": want sysv or shell`},
		{[]string{"--shutdown-timeout", "0s"}, "--shutdown-timeout 0s: must be positive"},
		{[]string{"0"}, `unexpected argument "0"`},
		{[]string{"--frobnicate"}, "flag provided but not defined"},
	} {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, tc.args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("subhost-init %q: %v, stderr %q; want exit status 2 and %q", tc.args, err, stderr.String(), tc.want)
		}
	}
}

func TestBootThenGarbagePowersOff(t *testing.T) {
	setup(t)
	g := boot(t, newRoot(t, nil), nil)
	g.booted()
	fi, err := os.Lstat(fmt.Sprintf("/proc/%d/root/run/initctl", g.pid))
	if err != nil || fi.Mode() != os.ModeNamedPipe|0o600 {
		t.Fatalf("/run/initctl: %v, %v; want a FIFO with mode 0600", fi.Mode(), err)
	}
	time.Sleep(100 * time.Millisecond)
	if !g.running() {
		t.Fatal("guest ended on its own after booting")
	}
	must(t, g.initctl([]byte("x\n")))
	if got := g.wait(10 * time.Second); got != guestexit.PowerOff || !g.ws.Signaled() || g.ws.Signal() != syscall.SIGINT {
		t.Errorf("guest ended with %s, want power off by reboot(2): killed by SIGINT", guestexit.Describe(g.ws))
	}
	want := []string{
		"rcS container=subhost RUNLEVEL=S",
		"rc 2 RUNLEVEL=2 PREVLEVEL=N",
		"rc 0 RUNLEVEL=0 PREVLEVEL=2",
	}
	if got := g.log(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("scripts ran as\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	con := g.console()
	for _, s := range []string{
		"subhost-init: running /etc/init.d/rcS\n",
		"subhost-init: running /etc/init.d/rc 2\n",
		"subhost-init: running /etc/init.d/rc 0\n",
	} {
		if !strings.Contains(con, s) {
			t.Errorf("console lacks %q", s)
		}
	}
	if req := "power off (/run/initctl: short request (2 bytes, want 384))"; !announced(con, req) {
		t.Errorf("console lacks %q", "subhost-init: "+req)
	}
}

func TestMissingScripts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		log   []string
		notes []string
	}{
		{"no rc", map[string]string{"/etc/init.d/rc": ""},
			[]string{"rcS container=subhost RUNLEVEL=S"},
			[]string{"subhost-init: no /etc/init.d/rc, skipping runlevel 2\n", "subhost-init: no /etc/init.d/rc, skipping runlevel 0\n"}},
		{"no rcS", map[string]string{"/etc/init.d/rcS": ""},
			[]string{"rc 2 RUNLEVEL=2 PREVLEVEL=N", "rc 0 RUNLEVEL=0 PREVLEVEL=2"},
			[]string{"subhost-init: no /etc/init.d/rcS, skipping boot scripts\n"}},
		{"neither", map[string]string{"/etc/init.d/rcS": "", "/etc/init.d/rc": ""},
			[]string{""},
			[]string{"no /etc/init.d/rcS, skipping boot scripts\n", "no /etc/init.d/rc, skipping runlevel 2\n"}},
		{"rc not executable", map[string]string{"/etc/init.d/rc": "-x" + defaultRC},
			[]string{"rcS container=subhost RUNLEVEL=S"},
			[]string{"/etc/init.d/rc is not executable, skipping runlevel 2\n"}},
		// Debian: /etc/init.d/rcS -> /lib/init/rcS, resolved inside the
		// guest (on the host that path does not exist).
		{"rcS absolute symlink", map[string]string{"/etc/init.d/rcS": "->/lib/init/rcS", "/lib/init/rcS": defaultRCS},
			[]string{"rcS container=subhost RUNLEVEL=S", "rc 2 RUNLEVEL=2 PREVLEVEL=N", "rc 0 RUNLEVEL=0 PREVLEVEL=2"},
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setup(t)
			g := boot(t, newRoot(t, tc.files), nil)
			g.until(10*time.Second, "the end of the boot", func() bool {
				return strings.Contains(g.console(), "skipping runlevel 2") || strings.Contains(strings.Join(g.log(), "\n"), "rc 2")
			})
			time.Sleep(100 * time.Millisecond)
			g.signal(syscall.SIGPWR)
			if got := g.wait(10 * time.Second); got != guestexit.PowerOff {
				t.Errorf("guest ended with %s, want power off", guestexit.Describe(g.ws))
			}
			if got := g.log(); strings.Join(got, "\n") != strings.Join(tc.log, "\n") {
				t.Errorf("scripts ran as %q, want %q", got, tc.log)
			}
			for _, n := range tc.notes {
				if !strings.Contains(g.console(), n) {
					t.Errorf("console lacks %q", n)
				}
			}
		})
	}
}
