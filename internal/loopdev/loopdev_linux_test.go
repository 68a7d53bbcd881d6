package loopdev

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk/stagetest"
)

// image makes a sparse file of size bytes with a marker at offset.
func image(t *testing.T, size, offset int64, marker string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(marker), offset); err != nil {
		t.Fatal(err)
	}
	return path
}

func gone(t *testing.T, image string) {
	t.Helper()
	devs, err := FindByBacking(image)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 0 {
		t.Fatalf("still attached: %+v", devs)
	}
}

func TestAttachOffsetSizeLimit(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	img := image(t, 8<<20, 1<<20, "hello loop")
	d, f, err := Attach(img, Options{Offset: 1 << 20, SizeLimit: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); Detach(*d) })
	if d.Backing != img || d.Offset != 1<<20 || d.SizeLimit != 4<<20 || d.ReadOnly || d.Autoclear || d.Major == 0 && d.Minor == 0 {
		t.Errorf("device: %+v", d)
	}
	buf := make([]byte, 10)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "hello loop" {
		t.Errorf("read at offset 0 of the device: %q %v", buf, err)
	}
	size, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
	if err != nil || size != 4<<20 {
		t.Errorf("device size %d, want %d (%v)", size, 4<<20, err)
	}
	list, err := List()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, l := range list {
		if l.Path == d.Path {
			found = true
			if l.Backing != img || l.Offset != d.Offset || l.SizeLimit != d.SizeLimit || l.Major != d.Major || l.Minor != d.Minor || l.Autoclear || l.ReadOnly {
				t.Errorf("List has %+v, Attach gave %+v", l, *d)
			}
		}
	}
	if !found {
		t.Errorf("List does not have %s", d.Path)
	}
	if b, ok := BackingOf(d.Major, d.Minor); !ok || b != img {
		t.Errorf("BackingOf(%d:%d) = %q, %v; want %s", d.Major, d.Minor, b, ok, img)
	}
	if b, ok := BackingOf(1, 3); ok { // a character device's numbers
		t.Errorf("BackingOf(1:3) = %q, true", b)
	}
	f.Close()
	// Without autoclear, closing leaves it attached.
	if devs, _ := FindByBacking(img); len(devs) != 1 {
		t.Fatalf("after close without autoclear: %+v", devs)
	}
	if err := Detach(*d); err != nil {
		t.Fatal(err)
	}
	gone(t, img)
	if err := Detach(*d); err != nil {
		t.Errorf("second Detach: %v", err)
	}
}

func TestAutoclear(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	img := image(t, 4<<20, 0, "x")
	d, f, err := Attach(img, Options{Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := FindByBacking(img)
	if err != nil || len(devs) != 1 || !devs[0].Autoclear || devs[0].Path != d.Path || devs[0].Tag != img || d.Tag != img {
		t.Fatalf("FindByBacking: %+v %v", devs, err)
	}
	f.Close()
	gone(t, img)
}

func TestReadOnly(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	img := image(t, 4<<20, 0, "x")
	d, f, err := Attach(img, Options{ReadOnly: true, Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !d.ReadOnly {
		t.Errorf("device not marked read-only: %+v", d)
	}
	if devs, _ := FindByBacking(img); len(devs) != 1 || !devs[0].ReadOnly {
		t.Errorf("List: %+v", devs)
	}
	// Not even root may write to it (opening for writing may succeed;
	// the write fails).
	w, err := os.OpenFile(d.Path, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer w.Close()
	if _, err := w.WriteAt([]byte("y"), 0); err == nil {
		t.Errorf("wrote to read-only %s", d.Path)
	}
}

func TestFindByBackingSameInode(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	img := image(t, 4<<20, 0, "x")
	other := image(t, 4<<20, 0, "y")
	link := filepath.Join(t.TempDir(), "link.raw")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(filepath.Dir(img), "hard.raw")
	if err := os.Link(img, hard); err != nil {
		t.Fatal(err)
	}
	d, f, err := Attach(link, Options{Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d2, f2, err := Attach(other, Options{Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if d.Path == d2.Path {
		t.Fatalf("two images on one device %s", d.Path)
	}
	for _, p := range []string{img, link, hard} {
		devs, err := FindByBacking(p)
		if err != nil || len(devs) != 1 || devs[0].Path != d.Path {
			t.Errorf("FindByBacking(%s) = %+v, %v; want %s", p, devs, err, d.Path)
		}
	}
	if devs, err := FindByBacking(filepath.Join(t.TempDir(), "missing")); err != nil || len(devs) != 0 {
		t.Errorf("FindByBacking(missing) = %+v, %v", devs, err)
	}
}

func TestTag(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	img := image(t, 4<<20, 0, "x")
	d, f, err := Attach(img, Options{Autoclear: true, Tag: "subhost:abc"})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	devs, err := FindByBacking(img)
	if err != nil || len(devs) != 1 || devs[0].Tag != "subhost:abc" || d.Tag != "subhost:abc" || devs[0].Backing != img {
		t.Errorf("FindByBacking: %+v %v", devs, err)
	}
	long := string(bytes.Repeat([]byte("x"), MaxTag+1))
	if _, _, err := Attach(img, Options{Tag: long}); err == nil {
		t.Errorf("attached with a %d-byte tag", len(long))
	}
}

func TestDetachBusy(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	img := image(t, 4<<20, 0, "x")
	d, f, err := Attach(img, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// f is still open: the device is busy and Detach says so, leaving it
	// to go away when f closes.
	err = Detach(*d)
	if !errors.Is(err, ErrBusy) {
		t.Errorf("Detach of an open device: %v, want ErrBusy", err)
	}
	f.Close()
	gone(t, img)
}

// TestDetachWhileProbed: another process's scan of loop devices (another
// subhost's FindByBacking opens every one) holds the device open for
// moments: Detach waits them out instead of failing with ErrBusy.
func TestDetachWhileProbed(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	img := image(t, 4<<20, 0, "x")
	d, f, err := Attach(img, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.Close() // not autoclear: still attached
	stop, probing := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for first := true; ; first = false {
			select {
			case <-stop:
				return
			default:
			}
			fd, err := unix.Open(d.Path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
			if first {
				close(probing)
			}
			if err != nil {
				continue
			}
			time.Sleep(time.Millisecond)
			unix.Close(fd)
		}
	}()
	<-probing
	err = Detach(*d)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Errorf("Detach while another process keeps opening the device: %v", err)
	}
	// Gone either way: Detach marked it to go with its last user, and
	// the prober has closed it for good.
	gone(t, img)
}

func TestDetachReusedNumber(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	a := image(t, 4<<20, 0, "a")
	b := image(t, 4<<20, 0, "b")
	d, f, err := Attach(a, Options{Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	found, _ := FindByBacking(a)
	f.Close()
	gone(t, a)
	d2, f2, err := Attach(b, Options{Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if d2.Path != d.Path {
		t.Skipf("kernel gave %s then %s; nothing to test", d.Path, d2.Path)
	}
	// A stale record of a's device must not detach b's.
	if err := Detach(found[0]); err != nil {
		t.Errorf("Detach of a stale device: %v", err)
	}
	if devs, _ := FindByBacking(b); len(devs) != 1 {
		t.Errorf("Detach of a stale record took b's device")
	}
}

func TestAttachConcurrent(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	const n = 8
	var wg sync.WaitGroup
	paths := make([]string, n)
	files := make([]*os.File, n)
	errs := make([]error, n)
	imgs := make([]string, n)
	for i := range n {
		imgs[i] = image(t, 1<<20, 0, string(rune('a'+i)))
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, f, err := Attach(imgs[i], Options{Autoclear: true})
			errs[i], files[i] = err, f
			if d != nil {
				paths[i] = d.Path
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("attach %d: %v", i, errs[i])
			continue
		}
		if seen[paths[i]] {
			t.Errorf("%s handed out twice", paths[i])
		}
		seen[paths[i]] = true
		buf := make([]byte, 1)
		if _, err := files[i].ReadAt(buf, 0); err != nil || !bytes.Equal(buf, []byte{byte('a' + i)}) {
			t.Errorf("device %s reads %q, want %q", paths[i], buf, string(rune('a'+i)))
		}
		files[i].Close()
	}
}

func TestAttachErrors(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	if _, _, err := Attach(filepath.Join(t.TempDir(), "missing"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing image: %v", err)
	}
	if _, _, err := Attach(image(t, 1<<20, 0, "x"), Options{Offset: -1}); err == nil {
		t.Errorf("negative offset accepted")
	}
	// The file the caller checked, then replaced by a symlink to another
	// (a host disk, in the attack): refused.
	checked, other := image(t, 1<<20, 0, "checked"), image(t, 1<<20, 0, "other")
	var st unix.Stat_t
	if err := unix.Stat(checked, &st); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(checked); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, checked); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Attach(checked, Options{Dev: st.Dev, Ino: st.Ino}); err == nil || !strings.Contains(err.Error(), "no longer the file that was checked") {
		t.Errorf("a replaced image: %v", err)
	}
	if err := unix.Stat(other, &st); err != nil {
		t.Fatal(err)
	}
	d, f, err := Attach(checked, Options{Dev: st.Dev, Ino: st.Ino, Autoclear: true})
	if err != nil {
		t.Fatalf("the file checked, through a symlink: %v", err)
	}
	f.Close()
	_ = d
}
