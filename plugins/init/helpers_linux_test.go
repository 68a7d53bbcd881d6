package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/cgroups"
	"github.com/subhost/subhost/internal/launcher"
	"github.com/subhost/subhost/internal/testbin"
	"github.com/subhost/subhost/internal/testguest/initprobe"
	"github.com/subhost/subhost/sdk"
)

// TestMain lets the test binary be subhost-launch (the guest's launcher,
// and an unprivileged guest's starter, as cmd/subhost-launch) or a
// plugin process to kill mid-Up (upHelper), and makes the test process a
// child subreaper as the runner is.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case launcher.LaunchArg:
			launcher.Main()
		case launcher.StarterArg:
			launcher.StarterMain()
		}
	}
	launcherDir = testLauncherDir
	if req := os.Getenv(upHelperEnv); req != "" {
		upHelper(req)
	}
	if os.Geteuid() == 0 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, "PR_SET_CHILD_SUBREAPER:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if testInitDir != "" {
		os.RemoveAll(testInitDir)
	}
	if testLauncher != "" {
		os.RemoveAll(testLauncher)
	}
	os.Exit(code)
}

// testLauncherDir holds a link named subhost-launch to the test binary,
// which TestMain makes the launcher. Run as another user, where no guest
// is launched and the link would not be root's, it is a symbolic link to
// goodInit, root's, for Validate's check.
func testLauncherDir() (string, error) {
	testLauncherOnce.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			testLauncherErr = err
			return
		}
		// The stand-in for a plugin process (upHelper), killed by its
		// test and so unable to remove a directory of its own, uses its
		// parent's.
		if dir := os.Getenv(launcherDirEnv); dir != "" {
			testLauncher = dir
			return
		}
		testLauncher, testLauncherErr = os.MkdirTemp("", "subhost-launch-test-")
		if testLauncherErr != nil {
			return
		}
		if os.Geteuid() != 0 {
			testLauncherErr = os.Symlink(goodInit, filepath.Join(testLauncher, launcherName))
			return
		}
		testLauncherErr = os.Link(exe, filepath.Join(testLauncher, launcherName))
	})
	return testLauncher, testLauncherErr
}

// launcherDirEnv hands testLauncherDir's directory to a child test binary.
const launcherDirEnv = "SUBHOST_INIT_TEST_LAUNCHER_DIR"

var (
	testLauncherOnce sync.Once
	testLauncher     string
	testLauncherErr  error

	testInitOnce sync.Once
	testInitDir  string
	testInitPath string
	testInitErr  error
)

// testInit builds testdata/testinit, the stand-in for subhost-init,
// statically.
func testInit(t *testing.T) string {
	t.Helper()
	testInitOnce.Do(func() {
		testInitDir, testInitErr = os.MkdirTemp("", "subhost-init-test-")
		if testInitErr != nil {
			return
		}
		testInitPath = filepath.Join(testInitDir, "testinit")
		testInitErr = testbin.Build(testInitPath, "./plugins/init/testdata/testinit")
	})
	if testInitErr != nil {
		t.Fatal(testInitErr)
	}
	return testInitPath
}

// scratchRoot mounts a tmpfs on a new temporary directory and fills it
// as a busybox guest root whose testinit behaves as conf says.
func scratchRoot(t *testing.T, conf string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64m,mode=755"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount scratch root: %v", err)
		}
	})
	fillRoot(t, dir, conf)
	return dir
}

func fillRoot(t *testing.T, dir, conf string) {
	t.Helper()
	for _, d := range []string{"bin", "etc", "root", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs Debian's busybox-static: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "mount", "ls"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "testinit.conf"), []byte(conf+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func guestRequest(t *testing.T, root string, params map[string]string) *sdk.Request {
	t.Helper()
	p := map[string]string{"init_binary": testInit(t)}
	for k, v := range params {
		p[k] = v
	}
	sub := sdk.Subhost{Name: "tguest", Home: filepath.Dir(root)}
	// A guest that ends by itself leaves its launch record and its
	// cgroups, as a hibernating subhost does; the runner's Down would
	// remove them, so a Down from an empty state does here, after the
	// guest is reaped (upGuest's cleanup runs first), and must leave no
	// cgroup behind. The test's home is its own, and so is the record.
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := (&stage{}).Down(c, &sdk.Request{Subhost: sub, Stage: "init", Params: map[string]string{"shutdown_timeout": "1s"}}); err != nil {
			t.Errorf("Down at the end of the test: %v", err)
		}
		if path, err := launchRecordPath(sub); err == nil {
			removeLaunchRecord(path)
		}
		// The cgroup stage's Down, after init's.
		if err := cgroups.Remove(sub.Name, "", nil); err != nil {
			t.Errorf("remove the cgroups: %v", err)
		}
		noCgroups(t, sub.Name, "at the end of the test")
	})
	req := &sdk.Request{
		Subhost: sub,
		Stage:   "init",
		Params:  p,
		Record:  sdk.BootRecord{Root: root},
	}
	placeCgroups(t, req)
	return req
}

// placeCgroups makes the guest's cgroups as the cgroup stage would (for
// the record's devices) and records them and the device policy, which
// init requires.
func placeCgroups(t *testing.T, req *sdk.Request) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	p, err := cgroups.Setup(req.Subhost.Name, "", cgroups.Defaults(), req.Record.Devices)
	if err != nil {
		t.Fatal(err)
	}
	req.Record.Cgroups, req.Record.DevicePolicy = p.Cgroups, p.DevicePolicy
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// upGuest runs Up and makes sure the guest is gone and reaped when the
// test ends.
func upGuest(t *testing.T, s sdk.Stage, req *sdk.Request) *sdk.Result {
	t.Helper()
	res, err := s.Up(ctx(t), req)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	pid, start := res.Record.GuestPID, res.Record.GuestStartTime
	t.Cleanup(func() {
		if alive(pid, start) {
			unix.Kill(pid, unix.SIGKILL)
		}
		reap(t, pid, 10*time.Second)
	})
	return res
}

// reap waits for the child pid to end and returns its status; ok is
// false when it was already reaped.
func reap(t *testing.T, pid int, d time.Duration) (ws unix.WaitStatus, ok bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.ECHILD) {
			return ws, false
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			t.Fatalf("wait4 %d: %v", pid, err)
		}
		if got == pid {
			return ws, true
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest pid %d still running after %v", pid, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// children lists the test process's child processes.
func children(t *testing.T) []int {
	t.Helper()
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	var out []int
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(s)
			out = append(out, n)
		}
	}
	return out
}

type (
	devNode = initprobe.Node
	report  = initprobe.Report
)

func readReport(t *testing.T, root string) report {
	t.Helper()
	p := filepath.Join(root, "report.json")
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := os.ReadFile(p)
		if err == nil {
			var r report
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatalf("report: %v", err)
			}
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report from the guest: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mount is one line of a mountinfo.
type mount struct {
	point, fstype, opts, superOpts string
}

func parseMountinfo(s string) map[string]mount {
	out := map[string]mount{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		for i, x := range f {
			if x == "-" && i+3 < len(f) && len(f) > 5 {
				out[f[4]] = mount{point: f[4], fstype: f[i+1], opts: f[5], superOpts: f[i+3]}
			}
		}
	}
	return out
}

func hasOpt(opts, o string) bool {
	for _, x := range strings.Split(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}

// hostMount finds the host's mount at dir.
func hostMount(t *testing.T, dir string) mount {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return parseMountinfo(string(b))[dir]
}

func copyFile(t *testing.T, from, to string, extra []byte) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	out.Write(extra)
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func statDev(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Skipf("needs %s: %v", path, err)
	}
	return unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
}
