package testguest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subhost/subhost/sdk/stagetest"
)

func TestBusyboxRootAndImage(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	r := BusyboxRoot(t, filepath.Join(t.TempDir(), "root"))
	r.RcS("echo one", "echo two").Script(0, "S01x", "true")
	for _, p := range []string{"bin/sh", "bin/ip", "sbin/poweroff", "bin/httpd", "etc/init.d/rcS", "etc/init.d/rc", "etc/rc0.d/S01x"} {
		if _, err := os.Stat(r.Path(p)); err != nil {
			t.Errorf("guest root: %v", err)
		}
	}
	if _, err := os.Lstat(r.Path("etc/hostname")); err == nil {
		t.Errorf("the guest root has /etc/hostname; the hostname must come from subhost")
	}
	rcs, _ := os.ReadFile(r.Path("etc/init.d/rcS"))
	if i, j, k := strings.Index(string(rcs), "echo one"), strings.Index(string(rcs), "echo two"), strings.Index(string(rcs), "ready-rcS"); i < 0 || j < i || k < j {
		t.Errorf("rcS lines out of order:\n%s", rcs)
	}
	if out, err := exec.Command("sh", "-n", r.Path("etc/init.d/rcS")).CombinedOutput(); err != nil {
		t.Errorf("rcS: %v: %s", err, out)
	}
	for _, table := range []string{"mbr", "gpt", "none"} {
		img := Image(t, r.Dir, table)
		if fi, err := os.Stat(img); err != nil || fi.Size() != ImageSize {
			t.Errorf("image %s: %v", table, err)
		}
	}
}

func TestNetnsAndScratch(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	ns := Netns(t, "tgtest", "198.18.250.1/24")
	Bridge(t, ns, "br1", "")
	out, err := exec.Command("ip", "-n", ns, "-br", "addr", "show", "br0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "198.18.250.1/24") {
		t.Errorf("br0 in %s: %v: %s", ns, err, out)
	}
	dir := Scratch(t)
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o644); err != nil {
		t.Error(err)
	}
}
