package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/parttable"
)

// floorScript is the floor's PID 1 until it execs rcS: the same mounts,
// in the same order and with the same options, as the init stage makes
// for a guest (plugins/init/guest_linux.go), done with the standard
// tools. $1 is the root, $2 the /dev template, $3 the hostname.
const floorScript = `set -e
R=$1 TPL=$2
mount --make-rslave /
mount --bind "$R" "$R"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t tmpfs -o nosuid,strictatime,mode=755,size=65536k tmpfs "$R/dev"
cp -a "$TPL/." "$R/dev/"
mount -t devpts -o nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$R/dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777,size=65536k shm "$R/dev/shm"
mount -t tmpfs -o nosuid,nodev,mode=755,size=10% tmpfs "$R/run"
hostname "$3"
cd "$R"
pivot_root . .
umount -l .
cd /
exec /etc/init.d/rcS
`

// floor is a loop-mounted copy of the guest's image and a /dev template,
// ready for bare unshare runs.
type floor struct {
	root, devTemplate string
	out               bytes.Buffer
}

// partition1 reads partition 1's byte offset and size from the image's
// partition table.
func partition1(image string) (off, size int64, err error) {
	f, err := os.Open(image)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	t, err := parttable.Read(f, fi.Size())
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", image, err)
	}
	p, err := t.Partition(1)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", image, err)
	}
	return p.Start, p.Size, nil
}

// setupFloor copies image to dir/floor.raw (sparse), loop-mounts its
// first partition on dir/floor-root and makes the /dev template; the
// caller unmounts dir/floor-root (the loop device is autocleared).
func setupFloor(dir, image string) (*floor, error) {
	copyPath := filepath.Join(dir, "floor.raw")
	if out, err := exec.Command("cp", "--sparse=always", image, copyPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy the image for the floor: %v: %s", err, out)
	}
	off, size, err := partition1(copyPath)
	if err != nil {
		return nil, err
	}
	fl := &floor{root: filepath.Join(dir, "floor-root"), devTemplate: filepath.Join(dir, "floor-dev")}
	if err := os.Mkdir(fl.root, 0o755); err != nil {
		return nil, err
	}
	opts := fmt.Sprintf("loop,offset=%d,sizelimit=%d", off, size)
	if out, err := exec.Command("mount", "-t", "ext4", "-o", opts, copyPath, fl.root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mount the floor's image: %v: %s", err, out)
	}
	var st unix.Stat_t
	if err := unix.Stat(fl.root, &st); err != nil {
		return fl, err
	}
	return fl, makeDevTemplate(fl.devTemplate, unix.Major(st.Dev), unix.Minor(st.Dev))
}

// makeDevTemplate makes what the init stage puts in a guest's /dev, to be
// copied with one cp -a: the standard nodes, the root partition's node
// (vda1), pts and shm, and the links.
func makeDevTemplate(dir string, major, minor uint32) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, n := range []struct {
		name         string
		typ          uint32
		major, minor uint32
		perm         uint32
	}{
		{"null", unix.S_IFCHR, 1, 3, 0o666},
		{"zero", unix.S_IFCHR, 1, 5, 0o666},
		{"full", unix.S_IFCHR, 1, 7, 0o666},
		{"random", unix.S_IFCHR, 1, 8, 0o666},
		{"urandom", unix.S_IFCHR, 1, 9, 0o666},
		{"tty", unix.S_IFCHR, 5, 0, 0o666},
		{"vda1", unix.S_IFBLK, major, minor, 0o660},
	} {
		if err := unix.Mknod(filepath.Join(dir, n.name), n.typ|n.perm, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("mknod %s: %w", n.name, err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "pts"), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(dir, "shm"), 0o1777); err != nil {
		return err
	}
	for _, l := range [][2]string{
		{"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"},
		{"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
	} {
		if err := os.Symlink(l[1], filepath.Join(dir, l[0])); err != nil {
			return err
		}
	}
	return nil
}

// run boots the floor once and returns the time from before unshare
// until the marker appeared; it waits for the floor's PID 1 (rcS) to end.
func (fl *floor) run(ctx context.Context, hostname string) (time.Duration, error) {
	marker := filepath.Join(fl.root, MarkerPath)
	if err := os.Remove(marker); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	cmd := exec.Command("unshare", "--mount", "--pid", "--uts", "--ipc", "--net", "--fork", "--propagation", "unchanged",
		"/bin/sh", "-c", floorScript, "floor", fl.root, fl.devTemplate, hostname)
	// What subhost-init gets, and nothing else.
	cmd.Env = []string{"container=subhost", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=linux", "HOME=/"}
	fl.out.Reset()
	cmd.Stdout, cmd.Stderr = &fl.out, &fl.out
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var ready time.Duration
	var exited bool
	var waitErr error
	deadline := t0.Add(30 * time.Second)
	for ready == 0 || !exited {
		if ready == 0 && exists(marker) {
			ready = time.Since(t0)
		}
		if !exited {
			select {
			case waitErr = <-done:
				exited = true
				if ready == 0 && exists(marker) {
					ready = time.Since(t0)
				}
				if ready == 0 {
					return 0, fmt.Errorf("floor ended (%v) without the marker: %s", waitErr, tail(fl.out.String()))
				}
			default:
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("floor: no marker after 30s: %s", tail(fl.out.String()))
		}
		time.Sleep(pollEvery)
	}
	if waitErr != nil {
		return 0, fmt.Errorf("floor: %v: %s", waitErr, tail(fl.out.String()))
	}
	if err := os.Remove(marker); err != nil {
		return 0, err
	}
	return ready, nil
}

// unmount undoes setupFloor's mount (which frees its loop device).
func (fl *floor) unmount() error {
	if len(mountsUnder(fl.root)) == 0 {
		return nil
	}
	if out, err := exec.Command("umount", fl.root).CombinedOutput(); err != nil {
		return fmt.Errorf("umount %s: %v: %s", fl.root, err, out)
	}
	return nil
}

// tail is the last few lines of a command's output, for an error.
func tail(s string) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	if len(lines) > 4 {
		lines = lines[len(lines)-4:]
	}
	return strconv.Quote(string(bytes.Join(lines, []byte(" | "))))
}
