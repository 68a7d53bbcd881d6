package holders

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/testguest"
	"github.com/subhost/subhost/sdk/stagetest"
)

// childEnv makes the test binary a holder: it takes hold of the path in
// childPathEnv the way the mode says, prints "ready", and lets go when
// its stdin closes.
const (
	childEnv     = "HOLDERS_TEST_CHILD"
	childPathEnv = "HOLDERS_TEST_PATH"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := hold(mode, os.Getenv(childPathEnv)); err != nil {
			fmt.Fprintf(os.Stderr, "holder %s: %v\n", mode, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func hold(mode, path string) error {
	switch mode {
	case "cwd", "exe", "namespace":
		// The parent set the working directory, the executable or
		// the namespace.
	case "root":
		if err := unix.Chroot(path); err != nil {
			return err
		}
	case "fd", "node":
		// O_PATH: a device node is held without its driver.
		if _, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0); err != nil {
			return err
		}
	case "mmap":
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		if _, err := unix.Mmap(int(f.Fd()), 0, 1, unix.PROT_READ, unix.MAP_SHARED); err != nil {
			return err
		}
		f.Close() // held by the mapping alone
	default:
		return fmt.Errorf("unknown mode")
	}
	fmt.Println("ready")
	// Nothing is written to stdin: the read ends when it closes.
	os.Stdin.Read(make([]byte, 1))
	return nil
}

// holder starts a holder process and waits until it holds path. It ends
// when the test does, or when release is called.
func holder(t *testing.T, mode, path string, setup func(*exec.Cmd)) (pid int, release func()) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+mode, childPathEnv+"="+path)
	cmd.Stderr = os.Stderr
	if setup != nil {
		setup(cmd)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	release = func() {
		stdin.Close()
		cmd.Wait()
	}
	t.Cleanup(release)
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		t.Fatalf("holder %s of %s did not start", mode, path)
	}
	return cmd.Process.Pid, release
}

// find returns what Find says of pid, or nil.
func find(t Target, pid int) *Holder {
	for _, h := range Find(t) {
		if h.PID == pid {
			return &h
		}
	}
	return nil
}

// useOf returns the first of h's uses whose What starts with what.
func useOf(h *Holder, what string) *Use {
	for i, u := range h.Uses {
		if strings.HasPrefix(u.What, what) {
			return &h.Uses[i]
		}
	}
	return nil
}

func devOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Dev
}

// TestFind: a process holding something under a mount, by each of the
// ways a process can, is found by the mount's device and by the path,
// and is gone once it lets go.
func TestFind(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mode, what string
		// in is the path held, under the mount.
		in string
		// setup makes the holder hold held.
		setup func(held string) func(*exec.Cmd)
	}{
		{mode: "cwd", what: "cwd", in: "sub", setup: func(held string) func(*exec.Cmd) {
			return func(cmd *exec.Cmd) { cmd.Dir = held }
		}},
		{mode: "root", what: "root", in: "sub"},
		{mode: "fd", what: "fd ", in: "sub/file"},
		{mode: "mmap", what: "maps", in: "sub/file"},
		{mode: "exe", what: "exe", in: "sub/holders.test", setup: func(held string) func(*exec.Cmd) {
			return func(cmd *exec.Cmd) { cmd.Path = held }
		}},
	} {
		t.Run(c.mode, func(t *testing.T) {
			dir := testguest.Scratch(t)
			if err := os.Mkdir(dir+"/sub", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dir+"/sub/file", []byte("data"), 0o644); err != nil {
				t.Fatal(err)
			}
			// A copy of this test binary, to run from the mount.
			b, err := os.ReadFile(exe)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dir+"/sub/holders.test", b, 0o755); err != nil {
				t.Fatal(err)
			}
			held := dir + "/" + c.in
			var setup func(*exec.Cmd)
			if c.setup != nil {
				setup = c.setup(held)
			}
			pid, release := holder(t, c.mode, held, setup)
			for _, tg := range []Target{{FS: devOf(t, dir)}, {Path: dir}, {Path: held}} {
				h := find(tg, pid)
				if h == nil {
					t.Errorf("%+v: pid %d not found", tg, pid)
					continue
				}
				if u := useOf(h, c.what); u == nil || u.Path != held {
					t.Errorf("%+v: pid %d uses %v, want %s %s", tg, pid, h.Uses, c.what, held)
				}
				if h.Comm == "" || h.MountedAt != "" {
					t.Errorf("%+v: %+v", tg, h)
				}
			}
			// A path that only starts with the same letters.
			if h := find(Target{Path: dir + "/su"}, pid); h != nil {
				t.Errorf("%s/su: found %+v", dir, h)
			}
			release()
			if h := Find(Target{FS: devOf(t, dir), Path: dir}); len(h) != 0 {
				t.Errorf("after it let go: %+v", h)
			}
		})
	}
}

// TestFindBlock: a block device node held open is found by the device's
// number, wherever the node is; a cwd on the node's filesystem is not.
func TestFindBlock(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	dir := testguest.Scratch(t)
	// 240-254 are for local use: no driver claims 240:77.
	dev := unix.Mkdev(240, 77)
	node := dir + "/node"
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(dev)); err != nil {
		t.Fatal(err)
	}
	pid, _ := holder(t, "node", node, nil)
	cwd, _ := holder(t, "cwd", dir, func(cmd *exec.Cmd) { cmd.Dir = dir })
	h := find(Target{Block: dev}, pid)
	if h == nil || len(h.Uses) != 1 || !strings.HasPrefix(h.Uses[0].What, "fd ") || h.Uses[0].Path != node {
		t.Errorf("node held open: %+v", h)
	}
	if h := find(Target{Block: dev}, cwd); h != nil {
		t.Errorf("a cwd counted as holding the device: %+v", h)
	}
	if h := find(Target{Block: unix.Mkdev(240, 78)}, pid); h != nil {
		t.Errorf("another device number: %+v", h)
	}
}

// TestFindNamespaces: another mount namespace with the mount in it is
// named, through its first process, only when asked for.
func TestFindNamespaces(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	dir := testguest.Scratch(t)
	fs := devOf(t, dir)
	pid, release := holder(t, "namespace", dir, func(cmd *exec.Cmd) {
		cmd.SysProcAttr = &unix.SysProcAttr{Unshareflags: unix.CLONE_NEWNS}
	})
	if h := find(Target{FS: fs, Namespaces: true}, pid); h == nil || h.MountedAt != dir || len(h.Uses) != 0 {
		t.Errorf("namespace holding %s: %+v", dir, h)
	}
	if h := find(Target{FS: fs}, pid); h != nil {
		t.Errorf("without Namespaces: %+v", h)
	}
	if h := find(Target{FS: unix.Mkdev(240, 79), Namespaces: true}, pid); h != nil {
		t.Errorf("a device the namespace does not mount: %+v", h)
	}
	release()
	if h := Find(Target{FS: fs, Namespaces: true}); len(h) != 0 {
		t.Errorf("after the namespace went: %+v", h)
	}
}

func TestStrings(t *testing.T) {
	if got := (Holder{PID: 12, Comm: "bash"}).Who(); got != "pid 12 (bash)" {
		t.Errorf("Who: %q", got)
	}
	for _, c := range []struct {
		u    Use
		want string
	}{
		{Use{"cwd", "/h/live/etc"}, "cwd /h/live/etc"},
		{Use{"fd 3", "/dev/loop7"}, "fd 3 /dev/loop7"},
		{Use{"maps", "/h/live/lib/libc.so.6"}, "maps /h/live/lib/libc.so.6"},
	} {
		if got := c.u.String(); got != c.want {
			t.Errorf("%#v: %q, want %q", c.u, got, c.want)
		}
	}
}
