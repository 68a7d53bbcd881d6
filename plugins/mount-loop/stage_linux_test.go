package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/fsdetect"
	"github.com/subhost/subhost/internal/imagebuild"
	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/internal/mountinfo"
	"github.com/subhost/subhost/internal/testbin"
	"github.com/subhost/subhost/internal/testguest"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

var ctx = context.Background()

// subhost makes a unique subhost name and an empty home for it.
func subhost(t *testing.T) (name, home string) {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	return "ml" + hex.EncodeToString(b), t.TempDir()
}

// buildImage makes a 32 MiB sparse image with `subhost image build`'s
// code: partition 1 (or the whole image, table "none") is ext4 holding
// /etc/hostname = content.
func buildImage(t *testing.T, table, content string) string {
	t.Helper()
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc/hostname"), []byte(content+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), table+".raw")
	if err := imagebuild.Build(ctx, imagebuild.Options{From: src, Image: img, Table: table, Size: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	return img
}

// upOrFail brings req up and downs it (from an empty state) when the test
// ends, whatever happens in between.
func upOrFail(t *testing.T, s *stage, req *sdk.Request) *sdk.Result {
	t.Helper()
	t.Cleanup(func() {
		down := *req
		down.State = nil
		if err := s.Down(ctx, &down); err != nil {
			t.Errorf("cleanup Down: %v", err)
		}
	})
	if err := s.Validate(ctx, req); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	res, err := s.Up(ctx, req)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	return res
}

func withState(req *sdk.Request, res *sdk.Result) *sdk.Request {
	r := *req
	r.State = res.State
	return &r
}

// checkDevice checks a boot record device against the kernel's loop
// device: major:minor, read-only flag, backing file, and what its first
// bytes hold.
func checkDevice(t *testing.T, d sdk.Device, image string, ro bool) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(d.HostPath, &st); err != nil {
		t.Fatalf("%s: %v", d.GuestName, err)
	}
	if unix.Major(st.Rdev) != d.Major || unix.Minor(st.Rdev) != d.Minor {
		t.Errorf("%s: %s is %d:%d, the record says %d:%d", d.GuestName, d.HostPath, unix.Major(st.Rdev), unix.Minor(st.Rdev), d.Major, d.Minor)
	}
	if d.ReadOnly != ro {
		t.Errorf("%s: read-only %v, want %v", d.GuestName, d.ReadOnly, ro)
	}
	name := filepath.Base(d.HostPath)
	sysro, _ := os.ReadFile("/sys/block/" + name + "/ro")
	if (strings.TrimSpace(string(sysro)) == "1") != ro {
		t.Errorf("%s: %s kernel read-only flag %q, want %v", d.GuestName, d.HostPath, sysro, ro)
	}
	backing, _ := os.ReadFile("/sys/block/" + name + "/loop/backing_file")
	if strings.TrimSpace(string(backing)) != image {
		t.Errorf("%s: %s is backed by %q, want %q", d.GuestName, d.HostPath, backing, image)
	}
	if ro {
		f, err := os.OpenFile(d.HostPath, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteAt([]byte("x"), 0)
			f.Close()
			if err == nil {
				t.Errorf("%s: wrote to read-only %s", d.GuestName, d.HostPath)
			}
		}
	}
}

// isExt4 says whether the device starts with an ext superblock.
func isExt4(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return fsdetect.Detect(f) == "ext4"
}

func TestKinds(t *testing.T) {
	for _, table := range []string{"mbr", "gpt", "none"} {
		t.Run(table, func(t *testing.T) {
			stagetest.RequireRoot(t)
			stagetest.NoLeaks(t)
			s := &stage{}
			name, home := subhost(t)
			img := buildImage(t, table, "guest-"+table)
			part := "1"
			if table == "none" {
				part = "0"
			}
			req := request(name, home, "vda:"+part+":"+img)
			res := upOrFail(t, s, req)

			live := filepath.Join(home, "live")
			if res.Record.Root != live {
				t.Errorf("root %q, want %q", res.Record.Root, live)
			}
			b, err := os.ReadFile(filepath.Join(live, "etc/hostname"))
			if err != nil || string(b) != "guest-"+table+"\n" {
				t.Errorf("live/etc/hostname: %q %v", b, err)
			}
			// live is writable, nosuid and nodev.
			if err := os.WriteFile(filepath.Join(live, "written"), []byte("x"), 0o644); err != nil {
				t.Errorf("write to live: %v", err)
			}
			var sfs unix.Statfs_t
			if err := unix.Statfs(live, &sfs); err != nil || sfs.Flags&unix.ST_NODEV == 0 || sfs.Flags&unix.ST_NOSUID == 0 || sfs.Flags&unix.ST_RDONLY != 0 {
				t.Errorf("live mount flags %#x %v", sfs.Flags, err)
			}
			wantNodes := []string{"vda", "vda1"}
			if table == "none" {
				wantNodes = wantNodes[:1]
			}
			var got []string
			for _, d := range res.Record.Devices {
				got = append(got, d.GuestName)
				checkDevice(t, d, img, true)
			}
			if !reflect.DeepEqual(got, wantNodes) {
				t.Fatalf("devices %v, want %v", got, wantNodes)
			}
			// The partition node shows the filesystem; with a table the
			// whole-disk node does not.
			last := res.Record.Devices[len(res.Record.Devices)-1]
			if !isExt4(t, last.HostPath) {
				t.Errorf("%s (%s) does not hold the ext4 filesystem", last.GuestName, last.HostPath)
			}
			if table != "none" && isExt4(t, res.Record.Devices[0].HostPath) {
				t.Errorf("whole disk %s starts with the filesystem", res.Record.Devices[0].HostPath)
			}
			var st upState
			if err := json.Unmarshal(res.State, &st); err != nil || st.Live != live || len(st.Loops) != 1+len(wantNodes) || st.Loops[0].Role != roleRoot {
				t.Errorf("state %s %v", res.State, err)
			}
			if err := s.Check(ctx, withState(req, res)); err != nil {
				t.Errorf("Check: %v", err)
			}
			if err := s.Down(ctx, withState(req, res)); err != nil {
				t.Fatalf("Down: %v", err)
			}
			if devs, _ := loopdev.FindByBacking(img); len(devs) != 0 {
				t.Errorf("after Down: %+v", devs)
			}
			if err := s.Check(ctx, withState(req, res)); !sdk.IsKind(err, sdk.KindNotFound) {
				t.Errorf("Check after Down: %v", err)
			}
			if _, err := os.Stat(filepath.Join(live, "etc")); err == nil {
				t.Errorf("live still shows the image after Down")
			}
		})
	}
}

func TestTwoDisks(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := &stage{}
	name, home := subhost(t)
	a := buildImage(t, "mbr", "root")
	b := buildImage(t, "gpt", "data")
	c := buildImage(t, "none", "bare")
	req := request(name, home, "vda:1:"+a, "vdb:1:"+b, "vdc:0:"+c)
	res := upOrFail(t, s, req)
	want := []struct {
		name, image string
		ro          bool
	}{{"vda", a, true}, {"vda1", a, true}, {"vdb", b, false}, {"vdb1", b, false}, {"vdc", c, false}}
	if len(res.Record.Devices) != len(want) {
		t.Fatalf("devices %+v", res.Record.Devices)
	}
	for i, w := range want {
		d := res.Record.Devices[i]
		if d.GuestName != w.name {
			t.Errorf("device %d is %s, want %s", i, d.GuestName, w.name)
		}
		checkDevice(t, d, w.image, w.ro)
	}
	// The guest can write to its data disk's partition.
	f, err := os.OpenFile(res.Record.Devices[3].HostPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 100); err != nil {
		t.Errorf("write to vdb1: %v", err)
	}
	f.Close()
	if !isExt4(t, res.Record.Devices[3].HostPath) || !isExt4(t, res.Record.Devices[4].HostPath) {
		t.Errorf("vdb1 or vdc does not hold ext4")
	}
	if err := s.Down(ctx, withState(req, res)); err != nil {
		t.Fatalf("Down: %v", err)
	}
	for _, img := range []string{a, b, c} {
		if devs, _ := loopdev.FindByBacking(img); len(devs) != 0 {
			t.Errorf("after Down, %s: %+v", img, devs)
		}
	}
}

func TestReentryAdopts(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := &stage{}
	name, home := subhost(t)
	a := buildImage(t, "gpt", "root")
	b := buildImage(t, "mbr", "data")
	req := request(name, home, "vda:1:"+a, "vdb:1:"+b)
	first := upOrFail(t, s, req)
	before, _ := loopdev.List()
	for _, r := range []*sdk.Request{withState(req, first), req} { // with and without state
		again, err := s.Up(ctx, r)
		if err != nil {
			t.Fatalf("Up again: %v", err)
		}
		if !reflect.DeepEqual(first.Record, again.Record) || string(first.State) != string(again.State) {
			t.Errorf("Up again gave another result:\n%+v\n%+v", first.Record, again.Record)
		}
	}
	after, _ := loopdev.List()
	if len(after) != len(before) {
		t.Errorf("Up again attached more loop devices: %d, then %d", len(before), len(after))
	}
	var onLive int
	for _, m := range mustMounts(t) {
		if m.Mountpoint == filepath.Join(home, "live") {
			onLive++
		}
	}
	if onLive != 1 {
		t.Errorf("%d mounts on live, want 1", onLive)
	}
}

func TestDownFromEmptyState(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := &stage{}
	name, home := subhost(t)
	a := buildImage(t, "mbr", "root")
	b := buildImage(t, "none", "data")
	req := request(name, home, "vda:1:"+a, "vdb:0:"+b)
	// Nothing there yet: success.
	if err := s.Down(ctx, req); err != nil {
		t.Fatalf("Down of nothing: %v", err)
	}
	upOrFail(t, s, req)
	if err := s.Down(ctx, req); err != nil { // req.State is nil
		t.Fatalf("Down from empty state: %v", err)
	}
	for _, img := range []string{a, b} {
		if devs, _ := loopdev.FindByBacking(img); len(devs) != 0 {
			t.Errorf("after Down, %s: %+v", img, devs)
		}
	}
	// With no config at all, only the state.
	res := upOrFail(t, s, req)
	bare := request(name, home)
	bare.State = res.State
	if err := s.Down(ctx, bare); err != nil {
		t.Fatalf("Down from state alone: %v", err)
	}
	if devs, _ := loopdev.FindByBacking(a); len(devs) != 0 {
		t.Errorf("after Down from state: %+v", devs)
	}
	// With neither: the root mount on live is still found and removed.
	upOrFail(t, s, req)
	if err := s.Down(ctx, request(name, home)); err != nil {
		t.Fatalf("Down with neither state nor config: %v", err)
	}
	if devs, _ := loopdev.FindByBacking(a); len(devs) != 0 {
		t.Errorf("after Down with neither state nor config: %+v", devs)
	}
}

// The images replaced since Up (a new version moved into place) or
// removed: Down still finds the devices, which serve the old files, by
// their tag, and leaves nothing attached.
func TestDownAfterTheImagesChanged(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := &stage{}
	name, home := subhost(t)
	a := buildImage(t, "mbr", "root")
	b := buildImage(t, "none", "data")
	req := request(name, home, "vda:1:"+a, "vdb:0:"+b)
	res := upOrFail(t, s, req)
	newer := buildImage(t, "mbr", "root v2")
	if err := os.Rename(newer, a); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Down(ctx, withState(req, res)); err != nil {
		t.Errorf("Down: %v", err)
	}
	if devs, _ := loopdev.FindByTag(tagPrefix + name); len(devs) != 0 {
		t.Errorf("after Down: %+v", devs)
	}
}

func TestConformance(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	name, home := subhost(t)
	a := buildImage(t, "gpt", "root")
	b := buildImage(t, "mbr", "data")
	stagetest.Conformance(t, &stage{}, request(name, home, "vda:1:"+a, "vdb:1:"+b))
}

func TestRollback(t *testing.T) {
	stagetest.RequireRoot(t)
	name, home := subhost(t)
	a := buildImage(t, "mbr", "root")
	b := buildImage(t, "gpt", "data")
	req := request(name, home, "vda:1:"+a, "vdb:1:"+b)
	// Five devices: root, vda, vda1, vdb, vdb1. Fail after each.
	for fail := 1; fail <= 5; fail++ {
		t.Run(fmt.Sprint("after attach ", fail), func(t *testing.T) {
			stagetest.NoLeaks(t)
			calls := 0
			afterAttachHook = func() error {
				calls++
				if calls == fail {
					return errors.New("injected failure")
				}
				return nil
			}
			defer func() { afterAttachHook = nil }()
			_, err := (&stage{}).Up(ctx, req)
			if err == nil || !strings.Contains(err.Error(), "injected failure") {
				t.Fatalf("Up: %v", err)
			}
			for _, img := range []string{a, b} {
				if devs, _ := loopdev.FindByBacking(img); len(devs) != 0 {
					t.Errorf("left attached: %+v", devs)
				}
			}
			if _, err := os.Stat(filepath.Join(home, "live")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("live left behind: %v", err)
			}
		})
	}
}

func TestBusyDown(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := &stage{}
	name, home := subhost(t)
	a := buildImage(t, "mbr", "root")
	req := request(name, home, "vda:1:"+a)
	upOrFail(t, s, req)
	live := filepath.Join(home, "live")
	cmd := exec.Command("sleep", "60")
	cmd.Dir = filepath.Join(live, "etc")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	err := s.Down(ctx, req)
	want := fmt.Sprintf("unmount %s: busy (not detaching it lazily): held by pid %d (sleep): cwd", live, cmd.Process.Pid)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Down of a busy mount: %v\n  want %q", err, want)
	}
	if top := mountinfo.TopAt(mustMounts(t), live); top == nil || top.FSType != "ext4" {
		t.Errorf("busy live was unmounted anyway")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if err := s.Down(ctx, req); err != nil {
		t.Errorf("Down after the holder left: %v", err)
	}
}

func TestBusyNodeDevice(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := &stage{}
	name, home := subhost(t)
	a := buildImage(t, "none", "root")
	b := buildImage(t, "none", "data")
	req := request(name, home, "vda:0:"+a, "vdb:0:"+b)
	res := upOrFail(t, s, req)
	vdb := res.Record.Devices[1].HostPath
	f, err := os.Open(vdb)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = s.Down(ctx, req)
	want := fmt.Sprintf("still in use; it goes when its last user closes it: held by pid %d (", os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "fd ") {
		t.Errorf("Down with vdb open: %v\n  want %q", err, want)
	}
	f.Close()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if devs, _ := loopdev.FindByBacking(b); len(devs) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("vdb's device stayed after its last user closed it")
}

func mustMounts(t *testing.T) []mountinfo.Entry {
	t.Helper()
	m, err := mountinfo.Self()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestForeignMountOnLive(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := &stage{}
	name, home := subhost(t)
	a := buildImage(t, "mbr", "root")
	live := filepath.Join(home, "live")
	if err := os.Mkdir(live, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", live, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(live, 0)
	req := request(name, home, "vda:1:"+a)
	err := s.Validate(ctx, req)
	if !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), live+" is already a mount (tmpfs from tmpfs)") {
		t.Errorf("Validate: %v", err)
	}
	if _, err := s.Up(ctx, req); !sdk.IsKind(err, sdk.KindConflict) {
		t.Errorf("Up: %v", err)
	}
	err = s.Down(ctx, req)
	if err == nil || !strings.Contains(err.Error(), "not of this subhost's root partition: leaving it") {
		t.Errorf("Down: %v", err)
	}
	if top := mountinfo.TopAt(mustMounts(t), live); top == nil || top.FSType != "tmpfs" {
		t.Errorf("Down removed a mount that was not its own")
	}
}

func TestBadInput(t *testing.T) {
	stagetest.RequireRoot(t)
	dir := t.TempDir()
	good := buildImage(t, "mbr", "good")
	gpt := buildImage(t, "gpt", "gpt")
	bare := buildImage(t, "none", "bare")
	link := filepath.Join(dir, "link.raw")
	os.Symlink(good, link)
	fifo := filepath.Join(dir, "fifo")
	unix.Mkfifo(fifo, 0o600)
	empty := filepath.Join(dir, "empty.raw")
	os.WriteFile(empty, nil, 0o600)

	// A truncated copy of an MBR image: partition 1 runs past the end.
	truncated := copyFile(t, good)
	os.Truncate(truncated, 8<<20)
	// A GPT image with both headers damaged.
	corrupt := copyFile(t, gpt)
	fi, _ := os.Stat(corrupt)
	patch(t, corrupt, 512+24, []byte{9})
	patch(t, corrupt, fi.Size()-512+24, []byte{9})
	overlap := writeMBR(t, 16<<20, [3]uint32{0x83, 2048, 8192}, [3]uint32{0x83, 4096, 8192})
	nofs := writeMBR(t, 16<<20, [3]uint32{0x83, 2048, 8192})
	zeros := writeMBR(t, 16<<20)

	// Images in use: attached by another subhost's tag, or by hand.
	other := buildImage(t, "none", "other")
	_, fo, err := loopdev.Attach(other, loopdev.Options{Autoclear: true, Tag: "subhost:someoneelse", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fo.Close()
	byHand := buildImage(t, "none", "byhand")
	_, fh, err := loopdev.Attach(byHand, loopdev.Options{Autoclear: true, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()

	where := "config %s/config:2: "
	tests := []struct {
		name  string
		disks []string
		kind  sdk.ErrorKind
		want  string
	}{
		{"unset", nil, sdk.KindInvalidConfig, "DISKS is not set"},
		{"two fields", []string{"vda:1"}, sdk.KindInvalidConfig, where + `DISKS[0] "vda:1": want dev:part:image`},
		{"bad part", []string{"vda:1:" + good, "vdb:x:" + bare}, sdk.KindInvalidConfig, where + `DISKS[1] "vdb:x:` + bare + `": partition "x" is not a non-negative integer`},
		{"reserved", []string{"console:1:" + good}, sdk.KindInvalidConfig, `device name "console" is reserved`},
		{"bad name", []string{"VDA:1:" + good}, sdk.KindInvalidConfig, `must start with a lower-case letter`},
		{"duplicate", []string{"vda:1:" + good, "vda:0:" + bare}, sdk.KindInvalidConfig, `/dev/vda is already the disk of DISKS[0]`},
		{"node clash", []string{"vda:1:" + good, "vda1:0:" + bare}, sdk.KindInvalidConfig, `/dev/vda1 is already the partition node of DISKS[0]`},
		{"relative", []string{"vda:1:disk.raw"}, sdk.KindInvalidConfig, `image "disk.raw" is not an absolute path`},
		{"missing", []string{"vda:1:" + dir + "/nope.raw"}, sdk.KindInvalidConfig, `image "` + dir + `/nope.raw" does not exist`},
		{"directory", []string{"vda:1:" + dir}, sdk.KindInvalidConfig, `is a directory, not a regular file`},
		{"fifo", []string{"vda:1:" + fifo}, sdk.KindInvalidConfig, `is a FIFO, not a regular file`},
		{"device", []string{"vda:1:/dev/null"}, sdk.KindInvalidConfig, `image "/dev/null" is a character device, not a regular file`},
		{"empty", []string{"vda:0:" + empty}, sdk.KindInvalidConfig, `is empty`},
		{"same image twice", []string{"vda:1:" + good, "vdb:1:" + link}, sdk.KindInvalidConfig, `DISKS[1] "vdb:1:` + link + `": image "` + link + `" is the same file as the image of DISKS[0]`},
		{"no partition 3", []string{"vda:3:" + good}, sdk.KindInvalidConfig, `image "` + good + `" (mbr) has no partition 3 (it has 1)`},
		{"no table", []string{"vda:1:" + bare}, sdk.KindInvalidConfig, `no partition table (no MBR signature); for a bare filesystem use partition 0 (vda:0:` + bare + `)`},
		{"bare with a table", []string{"vda:0:" + gpt}, sdk.KindInvalidConfig, `holds no filesystem subhost recognizes (ext2/3/4, XFS, Btrfs, F2FS or FAT); it has a GPT partition table: give a partition number (e.g. vda:1:` + gpt + `)`},
		{"truncated", []string{"vda:1:" + truncated}, sdk.KindInvalidConfig, `bad partition table: mbr: partition 1 (bytes 1048576-33554432) extends past the end of the disk (8388608 bytes)`},
		{"corrupt gpt", []string{"vda:1:" + corrupt}, sdk.KindInvalidConfig, `bad partition table: gpt (protective MBR found): header at sector 1: CRC`},
		{"overlap", []string{"vda:1:" + overlap}, sdk.KindInvalidConfig, `bad partition table: mbr: partitions 1 (bytes 1048576-5242880) and 2 (bytes 2097152-6291456) overlap`},
		{"no filesystem", []string{"vda:1:" + nofs}, sdk.KindInvalidConfig, `partition 1 holds no filesystem subhost recognizes`},
		{"zeros", []string{"vda:0:" + zeros}, sdk.KindInvalidConfig, `holds no filesystem subhost recognizes`},
		{"other subhost", []string{"vda:1:" + good, "vdb:0:" + other}, sdk.KindConflict, `DISKS[1] "vdb:0:` + other + `": image "` + other + `" is in use: attached to /dev/loop`},
		{"other subhost named", []string{"vda:0:" + other}, sdk.KindConflict, `for subhost "someoneelse"`},
		{"by hand", []string{"vda:0:" + byHand}, sdk.KindConflict, `by something other than subhost`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stagetest.NoLeaks(t)
			name, home := subhost(t)
			want := tc.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, home)
			}
			req := request(name, home, tc.disks...)
			for _, call := range []string{"Validate", "Up"} {
				var err error
				if call == "Validate" {
					err = (&stage{}).Validate(ctx, req)
				} else {
					_, err = (&stage{}).Up(ctx, req)
				}
				if err == nil || sdk.KindOf(err) != tc.kind || !strings.Contains(err.Error(), want) {
					t.Errorf("%s: %v (%v)\n  want %v containing %q", call, err, sdk.KindOf(err), tc.kind, want)
				}
				if strings.Count(err.Error(), "\n") != 0 {
					t.Errorf("%s: more than one line: %q", call, err)
				}
			}
			if _, err := os.Stat(filepath.Join(home, "live")); err == nil {
				t.Errorf("bad input created live")
			}
		})
	}
}

// TestTinyImage: an image smaller than a sector is refused, naming its
// DISKS element. Its loop device would have size 0, which the kernel
// leaves out of /proc/partitions: Down never found it and every boot
// leaked one.
func TestTinyImage(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	name, home := subhost(t)
	root := buildImage(t, "none", "root")
	tiny := filepath.Join(t.TempDir(), "tiny.raw")
	if err := os.WriteFile(tiny, make([]byte, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	req := request(name, home, "vda:0:"+root, "vdb:0:"+tiny)
	want := `DISKS[1] "vdb:0:` + tiny + `": image "` + tiny + `" is 100 bytes, less than one 512-byte sector`
	// Validate first, and stop there if it lets the image through: Up
	// would then leak the device this test is about.
	if err := (&stage{}).Validate(ctx, req); !sdk.IsKind(err, sdk.KindInvalidConfig) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Validate: %v\n  want one line of invalid config containing %q", err, want)
	}
	if _, err := (&stage{}).Up(ctx, req); !sdk.IsKind(err, sdk.KindInvalidConfig) || !strings.Contains(err.Error(), want) {
		t.Errorf("Up: %v\n  want invalid config containing %q", err, want)
	}
	if _, err := os.Stat(filepath.Join(home, "live")); err == nil {
		t.Errorf("a refused image created live")
	}
}

func TestMissingHome(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	name, home := subhost(t)
	img := buildImage(t, "mbr", "x")
	req := request(name, home+"/missing", "vda:1:"+img)
	if err := (&stage{}).Validate(ctx, req); !sdk.IsKind(err, sdk.KindInvalidConfig) || !strings.Contains(err.Error(), "home "+home+"/missing is not a directory") {
		t.Errorf("Validate: %v", err)
	}
	if _, err := (&stage{}).Up(ctx, req); !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Errorf("Up: %v", err)
	}
}

func copyFile(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	return dst
}

func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestOtherSubhostShares(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := &stage{}
	nameA, homeA := subhost(t)
	nameB, homeB := subhost(t)
	a := buildImage(t, "mbr", "a")
	shared := buildImage(t, "gpt", "shared")
	upOrFail(t, s, request(nameA, homeA, "vda:1:"+a, "vdb:1:"+shared))
	// B wants A's data disk as its root: refused, named.
	reqB := request(nameB, homeB, "vda:1:"+shared)
	err := s.Validate(ctx, reqB)
	if !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), fmt.Sprintf("for subhost %q", nameA)) {
		t.Errorf("Validate: %v", err)
	}
	if _, err := s.Up(ctx, reqB); !sdk.IsKind(err, sdk.KindConflict) {
		t.Errorf("Up: %v", err)
	}
	// B's Down (the runner rolls back after a failed Up) leaves A alone.
	if err := s.Down(ctx, reqB); err != nil {
		t.Errorf("B's Down: %v", err)
	}
	if devs, _ := loopdev.FindByBacking(shared); len(devs) != 2 {
		t.Errorf("A's devices on the shared image after B's Down: %+v", devs)
	}
}

func TestBuildPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin")
	}
	testbin.MustBuild(t, "mount-loop", "./plugins/mount-loop")
}

// Two subhosts naming one image, coming up at once: B's Up starts while
// A's has surveyed the host and not yet attached. Only one gets it; the
// other is refused, naming it, and the image is mounted once.
func TestTwoSubhostsOneImageAtOnce(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := &stage{}
	nameA, homeA := subhost(t)
	nameB, homeB := subhost(t)
	img := buildImage(t, "mbr", "shared")
	reqA, reqB := request(nameA, homeA, "vda:1:"+img), request(nameB, homeB, "vda:1:"+img)
	var errB error
	doneB := make(chan struct{})
	var once sync.Once
	afterSurveyHook = func(string) {
		once.Do(func() { // A's Up only
			go func() {
				defer close(doneB)
				_, errB = s.Up(ctx, reqB)
			}()
			select { // B comes up meanwhile, unless it has to wait for A
			case <-doneB:
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
	defer func() { afterSurveyHook = nil }()
	resA, errA := s.Up(ctx, reqA)
	<-doneB
	if errA != nil {
		t.Errorf("A's Up: %v", errA)
	} else if err := s.Down(ctx, withState(reqA, resA)); err != nil {
		t.Errorf("A's Down: %v", err)
	}
	if !sdk.IsKind(errB, sdk.KindConflict) || !strings.Contains(fmt.Sprint(errB), nameA) {
		t.Errorf("B's Up: %v, want a conflict naming %s", errB, nameA)
	}
	if err := s.Down(ctx, reqB); err != nil { // the runner's rollback
		t.Errorf("B's Down: %v", err)
	}
}

// TestBtrfsRoot: a btrfs root comes up, checks and goes down clean. The
// kernel's mount table shows a btrfs mount with an anonymous device
// number (0:NN), not the loop device's: the stage must still know the
// mount on live as its own.
func TestBtrfsRoot(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc/hostname"), []byte("btrfs-guest\n"), 0o644)
	img := filepath.Join(t.TempDir(), "btrfs.raw")
	testguest.BtrfsImage(t, src, img)
	s := &stage{}
	name, home := subhost(t)
	req := request(name, home, "vda:0:"+img)
	res := upOrFail(t, s, req)
	live := filepath.Join(home, "live")
	if b, err := os.ReadFile(filepath.Join(live, "etc/hostname")); err != nil || string(b) != "btrfs-guest\n" {
		t.Errorf("live/etc/hostname: %q %v", b, err)
	}
	if err := s.Check(ctx, withState(req, res)); err != nil {
		t.Errorf("Check: %v", err)
	}
	// Up again adopts what is there.
	if _, err := s.Up(ctx, req); err != nil {
		t.Errorf("Up again: %v", err)
	}
	if err := s.Down(ctx, withState(req, res)); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if devs, _ := loopdev.FindByBacking(img); len(devs) != 0 {
		t.Errorf("after Down: %+v", devs)
	}
	if mounts, _ := mountinfo.Self(); mountinfo.TopAt(mounts, live) != nil {
		t.Errorf("live is still mounted after Down")
	}
}
