package testguest

import (
	"bufio"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// BtrfsImage makes img a bare 128 MiB btrfs file system holding the tree
// at src (mkfs.btrfs --rootdir; the smallest size it takes), without
// mounting anything. Without mkfs.btrfs the test skips, or fails in CI.
func BtrfsImage(t testing.TB, src, img string) {
	t.Helper()
	mkfs := Tool(t, "mkfs.btrfs", "btrfs-progs")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 128<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "--rootdir", src, img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.btrfs: %v\n%s", err, out)
	}
}

// FlockAs has a process of uid (and gid) hold a flock(1) on path, as any
// local user can on a file or directory they can open, until release is
// called or the test ends. Without flock(1), the test skips.
func FlockAs(t testing.TB, path string, uid int) (release func()) {
	t.Helper()
	holder := exec.Command("flock", path, "sh", "-c", "echo locked; exec sleep 60")
	holder.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}},
		Setpgid:    true,
	}
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Skipf("flock(1) as uid %d: %v", uid, err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			unix.Kill(-holder.Process.Pid, unix.SIGKILL)
			holder.Wait()
		})
	}
	t.Cleanup(release)
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("uid %d's flock on %s: %q, %v", uid, path, line, err)
	}
	return release
}
