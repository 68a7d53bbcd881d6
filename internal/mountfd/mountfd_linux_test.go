package mountfd

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/idrange"
	"github.com/subhost/subhost/internal/nsfs"
	"github.com/subhost/subhost/internal/testguest"
	"github.com/subhost/subhost/internal/userns"
	"github.com/subhost/subhost/sdk/stagetest"
)

const base = 0x7f000000 // outside pick's window: no subhost uses it

// scratchUserns pins a user namespace mapping 0..65535 to base.
func scratchUserns(t *testing.T) *os.File {
	dir := t.TempDir()
	u, n := filepath.Join(dir, "user"), filepath.Join(dir, "net")
	if err := userns.Create(idrange.Range{Base: base, Size: idrange.Block}, u, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsfs.Unpin(n); nsfs.Unpin(u) })
	f, err := nsfs.Open(u, unix.CLONE_NEWUSER)
	if err != nil || f == nil {
		t.Fatalf("open %s: %v", u, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// ext4 mounts a fresh ext4 image holding a root-owned file on a temp dir.
func ext4(t *testing.T) string {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", src, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() { unix.Unmount(dir, 0) })
	return dir
}

func TestIdmappedCloneShowsRangeAndWritesZero(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	ns := scratchUserns(t)
	for name, dir := range map[string]string{"ext4": ext4(t), "tmpfs": testguest.Scratch(t)} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("hi"), 0o644); err != nil {
				t.Fatal(err)
			}
			tree, err := CloneAt(dir, Options{Recursive: true, Userns: ns, Clear: unix.MOUNT_ATTR_NOSUID})
			if err != nil {
				t.Fatal(err)
			}
			defer tree.Close()
			at := t.TempDir()
			target, err := os.OpenFile(at, unix.O_PATH|unix.O_DIRECTORY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			if err := Attach(tree, target); err != nil {
				t.Fatal(err)
			}
			defer unix.Unmount(at, unix.MNT_DETACH)
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(at, "hello"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != base || st.Gid != base {
				t.Errorf("through the idmapped clone, a uid 0 file shows as %d:%d, want %d:%d", st.Uid, st.Gid, base, base)
			}
			// What the guest's root (host uid base) creates is uid 0 on disk.
			// (through a descriptor: base cannot search the test's 0700 dirs)
			mnt, err := os.Open(at)
			if err != nil {
				t.Fatal(err)
			}
			defer mnt.Close()
			err = asUID(base, func() error {
				fd, err := unix.Openat(int(mnt.Fd()), "made", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
				if err == nil {
					unix.Close(fd)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := unix.Stat(filepath.Join(dir, "made"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != 0 || st.Gid != 0 {
				t.Errorf("a file the mapped root made is %d:%d on disk, want 0:0", st.Uid, st.Gid)
			}
			// The host's root, outside the range, cannot create files there.
			if err := os.WriteFile(filepath.Join(at, "by-host-root"), nil, 0o644); !errors.Is(err, unix.EOVERFLOW) {
				t.Errorf("host root creating a file through the idmapped clone: %v, want EOVERFLOW", err)
			}
		})
	}
}

func TestProbeRefusesProc(t *testing.T) {
	stagetest.RequireRoot(t)
	ns := scratchUserns(t)
	err := Probe("/proc", ns)
	var pe *ProbeError
	if !errors.As(err, &pe) || pe.FSType == "" {
		t.Fatalf("probe of /proc: got %v, want a ProbeError", err)
	}
	t.Log(err)
}

func TestTmpfsDetached(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	f, err := New("tmpfs", "", [][2]string{{"mode", "0755"}, {"size", "1m"}, {"uid", "4242"}}, unix.MOUNT_ATTR_NOSUID)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Mknodat(int(f.Fd()), "null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod in a detached tmpfs: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Uid != 4242 {
		t.Errorf("detached tmpfs root: uid %d, %v", st.Uid, err)
	}
}

// asUID runs fn on a thread of its own whose file system ids are uid
// (the thread is discarded afterwards).
func asUID(uid int, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		unix.Setfsgid(uid)
		unix.Setfsuid(uid)
		done <- fn()
	}()
	return <-done
}
