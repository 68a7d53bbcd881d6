package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/internal/imagebuild"
)

// debianRootfsEnv names a Debian sysvinit root filesystem for
// TestDebianGuestLeavesHostSysctls; debianRootfs is where the test looks
// by default. debootstrap takes minutes, so the test never runs it: it
// skips unless the tree is there (build it once, as the skip message
// says; the check runs it where CI has cached it).
const (
	debianRootfsEnv = "SUBHOST_TEST_DEBIAN_ROOTFS"
	debianRootfs    = "/var/cache/subhost-debian/bookworm-sysv"
	debootstrapCmd  = "unshare --mount --propagation private debootstrap --variant=minbase --include=sysvinit-core,procps,ifupdown bookworm " + debianRootfs + " http://deb.debian.org/debian"
)

// TestDebianGuestLeavesHostSysctls boots a real Debian sysvinit guest
// whose /etc/sysctl.d sets vm.swappiness and kernel.pid_max: its
// /etc/init.d/procps applies them at boot, as on a real machine, and the
// host's values must not change. It also powers the guest off through
// Debian's own rc 0 (umountroot's `mount -o remount,ro /` included).
func TestDebianGuestLeavesHostSysctls(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a Debian guest (seconds to minutes); not with -short")
	}
	src := os.Getenv(debianRootfsEnv)
	if src == "" {
		src = debianRootfs
	}
	if _, err := os.Stat(filepath.Join(src, "etc/init.d/procps")); err != nil {
		t.Skipf("needs a Debian sysvinit root at %s (or $%s): %s", src, debianRootfsEnv, debootstrapCmd)
	}
	e := newEnv(t)
	swappiness, pidMax := readSysctl(t, "vm/swappiness"), readSysctl(t, "kernel/pid_max")

	root := filepath.Join(t.TempDir(), "root")
	if out, err := exec.Command("cp", "-a", src, root).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v: %s", src, err, out)
	}
	conf := fmt.Sprintf("vm.swappiness = %d\nkernel.pid_max = %d\n", (swappiness+17)%100, pidMax/2+1)
	if err := os.WriteFile(filepath.Join(root, "etc/sysctl.d/90-subhost-test.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "debian.raw")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := imagebuild.Build(ctx, imagebuild.Options{From: root, Image: img, Table: "mbr", Size: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	name := e.name("deb")
	ns, subnet := e.testnet()
	home := e.home(fmt.Sprintf("DISKS=( vda:1:%s )\nBRIDGES=( br0:06:a7:dd:b4:%02x:02 )", img, subnet))
	e.mustRun(ns, "run", "--pipeline", "pretend-boot", "--home", home, "--detach", name)

	// rcS (procps among it) is done once subhost-init goes on to rc 2.
	log := filepath.Join(logDir, name+".log")
	e.waitFor("the Debian guest's rcS", 2*time.Minute, func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "running /etc/init.d/rc 2")
	})
	// procps ran and was refused (its sysctl says so on the console).
	if b, _ := os.ReadFile(log); !strings.Contains(string(b), "vm.swappiness") {
		t.Errorf("the guest's console does not mention vm.swappiness: did /etc/init.d/procps run?\n%s", tail(string(b), 40))
	}
	if got := readSysctl(t, "vm/swappiness"); got != swappiness {
		t.Errorf("the host's vm.swappiness changed from %d to %d", swappiness, got)
	}
	if got := readSysctl(t, "kernel/pid_max"); got != pidMax {
		t.Errorf("the host's kernel.pid_max changed from %d to %d", pidMax, got)
	}
	// The guest tried, and was told.
	if out, _, code := e.run("enter", name, "--", "sysctl", "-p", "/etc/sysctl.d/90-subhost-test.conf"); code == 0 {
		t.Errorf("sysctl -p in the guest succeeded: %s", out)
	}
	e.mustRun("", "stop", "--timeout", "60s", name)
	e.clean(name)
}

func readSysctl(t *testing.T, knob string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + knob)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", knob, err)
	}
	return n
}
