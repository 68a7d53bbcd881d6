package cgroups

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// openEnv makes the test binary a process that joins the cgroup2
// directory it names, then opens each device node in its arguments
// ("PATH:r" or "PATH:rw") and prints what happened.
const openEnv = "CGROUPS_TEST_OPEN"

func openDevices(dir string) {
	if err := Join([]string{dir}); err != nil {
		fmt.Println("join:", err)
		os.Exit(1)
	}
	for _, a := range os.Args[1:] {
		path, mode, _ := strings.Cut(a, ":")
		flag := os.O_RDONLY
		if mode == "rw" {
			flag = os.O_RDWR
		}
		f, err := os.OpenFile(path, flag, 0)
		if err == nil {
			f.Close()
		}
		fmt.Printf("%s %s: %v\n", filepath.Base(path), mode, err)
	}
	os.Exit(0)
}

func v2Mount(t *testing.T) string {
	t.Helper()
	hs, err := hierarchies()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.v2() && h.mount != "" {
			return h.mount
		}
	}
	t.Skip("no cgroup2 mount on this host")
	return ""
}

// TestDeviceProgram: the cgroup v2 device program, attached to a scratch
// cgroup2 directory with a process in it, lets it open the allowed
// character devices, a read-only disk only for reading, and nothing else
// (EPERM), whatever its v1 device cgroup allows. It replaces the program
// of an earlier boot found there (an adopted cgroup's), which allowed
// another disk.
func TestDeviceProgram(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	dir := filepath.Join(v2Mount(t), fmt.Sprintf("subhost-devprog-test%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeTree(dir, time.Now().Add(3*time.Second)); err != nil {
			t.Error(err)
		}
	})
	earlier := Rules([]sdk.Device{{GuestName: "vda", Major: 7, Minor: 252}})
	rules := Rules([]sdk.Device{{GuestName: "vda", Major: 7, Minor: 250, ReadOnly: true}, {GuestName: "vdb", Major: 7, Minor: 251}})
	for _, rules := range [][]string{earlier, rules, rules} {
		load := loadDeviceProgram(rules)
		err := ensureDeviceProgram(dir, load)
		load.close()
		if err != nil {
			t.Fatal(err)
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := attachedDevicePrograms(fd)
	unix.Close(fd)
	if err != nil || n != 1 {
		t.Errorf("%d programs attached (%v), want 1", n, err)
	}
	if ok, err := DeviceProgramAttached(dir); !ok || err != nil {
		t.Errorf("DeviceProgramAttached: %v %v", ok, err)
	}

	nodes := t.TempDir()
	for _, n := range []struct {
		name   string
		maj, m uint32
	}{{"ro", 7, 250}, {"rw", 7, 251}, {"other", 7, 252}} {
		if err := unix.Mknod(filepath.Join(nodes, n.name), unix.S_IFBLK|0o600, int(unix.Mkdev(n.maj, n.m))); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("/proc/self/exe", "/dev/null:rw", "/dev/urandom:r", "/dev/loop-control:rw", "/dev/kmsg:r",
		nodes+"/ro:r", nodes+"/ro:rw", nodes+"/rw:rw", nodes+"/other:r")
	cmd.Env = []string{openEnv + "=" + dir}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	const eperm = "operation not permitted"
	for _, want := range []struct {
		line    string
		allowed bool
	}{
		{"null rw:", true}, {"urandom r:", true}, {"loop-control rw:", false}, {"kmsg r:", false},
		{"ro r:", true}, {"ro rw:", false}, {"rw rw:", true}, {"other r:", false},
	} {
		var got string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, want.line) {
				got = l
			}
		}
		// An allowed disk node whose loop device does not exist fails
		// past the cgroup's check, with ENXIO: anything but EPERM.
		if got == "" || strings.Contains(got, eperm) == want.allowed {
			t.Errorf("%q: got %q, allowed %v", want.line, got, want.allowed)
		}
	}
}
