package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/testguest"
)

// guest is a pretend-boot subhost booted by a test: its name, home,
// test netns and the guest root it was imaged from.
type guest struct {
	name, home, ns string
	root           *testguest.Root
}

// TestPretendBootRcS boots a busybox guest from an MBR image: rcS and rc 2
// run (markers on the image, seen through the mounted root).
func TestPretendBootRcS(t *testing.T) {
	e := newEnv(t)
	ns := e.netns("198.18.20.1/24")
	r := testguest.BusyboxRoot(t, filepath.Join(t.TempDir(), "root"))
	img := testguest.Image(t, r.Dir, "mbr")
	n := e.name("rcs")
	h := e.home("DISKS=( vda:1:" + img + " )\nBRIDGES=( br0:06:a7:dd:b4:20:02 )")
	e.mustRun(ns, "run", "--detach", "--pipeline", "pretend-boot", "--home", h, n)
	e.waitFor("rcS marker", 10*time.Second, func() bool { return e.guestHas(n, "/run/ready-rcS") })
	for _, m := range []string{"/root/rcS-ran", "/root/rc2-ran"} {
		if !e.guestHas(n, m) {
			t.Errorf("no %s in the guest", m)
		}
	}
	e.mustRun("", "stop", n)
	e.clean(n)
}
