package atomicfile_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/atomicfile"
	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/internal/testguest"
	"github.com/subhost/subhost/sdk/stagetest"
)

// TestReplaceWritesNothingOutOnExt4 checks, on a scratch ext4 mounted
// the way /run is on some hosts (no journal, discard), that a state file
// replaced again and again is never written out: the content a replace
// drops had no blocks, so freeing it is no discard to wait for. A plain
// rename over the file, for contrast, has ext4 write the new content out
// at once: the behaviour Replace steps around.
func TestReplaceWritesNothingOutOnExt4(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	mkfs := testguest.Tool(t, "mkfs.ext4", "e2fsprogs")
	scratch := testguest.Scratch(t)
	img := filepath.Join(scratch, "run.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-O", "^has_journal", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	dev, f, err := loopdev.Attach(img, loopdev.Options{Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	run := filepath.Join(scratch, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dev.Path, run, "ext4", 0, "discard"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(run, 0)

	onDisk := func(path string) bool {
		written, err := writtenOut(path)
		if err != nil {
			t.Fatal(err)
		}
		return written
	}
	state := filepath.Join(run, "state.json")
	for _, content := range []string{"one\n", "two\n", "three\n"} {
		if err := atomicfile.Replace(state, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := os.ReadFile(state); string(got) != "three\n" {
		t.Errorf("state holds %q, want the last content", got)
	}
	if onDisk(state) {
		t.Errorf("a replaced file was written out at once")
	}
	if names, _ := os.ReadDir(run); len(names) != 2 { // state.json, lost+found
		t.Errorf("directory holds %v, want only state.json and lost+found", names)
	}

	tmp := filepath.Join(run, "tmp")
	if err := os.WriteFile(tmp, []byte("four\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, state); err != nil {
		t.Fatal(err)
	}
	if !onDisk(state) {
		t.Errorf("a file renamed over another was not written out: the reason for Replace's exchange is gone")
	}
}

// writtenOut reports whether the file's first extent has blocks on disk,
// rather than only reserved for a later write-out (delayed allocation),
// through FS_IOC_FIEMAP without its sync flag. st_blocks cannot tell:
// ext4 counts reserved blocks in it.
func writtenOut(path string) (bool, error) {
	const (
		fsIocFiemap    = 0xc020660b // _IOWR('f', 11, struct fiemap)
		extentDelalloc = 0x4        // FIEMAP_EXTENT_DELALLOC
	)
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	// struct fiemap (32 bytes) with room for one struct fiemap_extent
	// (56 bytes): fm_length at 8, fm_mapped_extents at 20,
	// fm_extent_count at 24; the extent's fe_flags at 32+40.
	var buf [(32 + 56) / 8]uint64 // 8-byte aligned
	b := (*[len(buf) * 8]byte)(unsafe.Pointer(&buf))
	binary.NativeEndian.PutUint64(b[8:], ^uint64(0))
	binary.NativeEndian.PutUint32(b[24:], 1)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf))); errno != 0 {
		return false, fmt.Errorf("FIEMAP %s: %w", path, errno)
	}
	if binary.NativeEndian.Uint32(b[20:]) == 0 {
		return false, nil // no extent at all
	}
	return binary.NativeEndian.Uint32(b[32+40:])&extentDelalloc == 0, nil
}
