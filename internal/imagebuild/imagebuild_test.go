package imagebuild

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/internal/parttable"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"512": 512, "4K": 4096, "4k": 4096, "64M": 64 << 20, "64MiB": 64 << 20, "64mb": 64 << 20,
		"1G": 1 << 30, "2T": 2 << 40, " 8M ": 8 << 20, "100B": 100,
	}
	for in, want := range good {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "0", "-1M", "+5M", "1.5G", "12X", "0x10", "1P", "9999999999T", "MiB"} {
		if got, err := ParseSize(in); err == nil || !sdk.IsKind(err, sdk.KindInvalidConfig) {
			t.Errorf("ParseSize(%q) = %d, %v; want an invalid-input error", in, got, err)
		}
	}
}

// source makes a small directory tree to build from.
func source(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc/init.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/hostname"), []byte("guest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/lib/init/rcS", filepath.Join(dir, "etc/init.d/rcS")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
}

// debugfs runs a debugfs request on the filesystem at offset in image.
func debugfs(t *testing.T, image string, offset int64, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, image+"?offset="+strconv.FormatInt(offset, 10)).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %s: %v: %s", request, err, out)
	}
	return string(out)
}

func TestBuild(t *testing.T) {
	need(t, "mkfs.ext4", "debugfs", "e2fsck")
	src := source(t)
	const size = 32 << 20
	for _, table := range []string{"mbr", "gpt", "none"} {
		t.Run(table, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "disk.raw")
			if err := Build(context.Background(), Options{From: src, Image: img, Table: table, Size: size}); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(img)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != size || fi.Mode().Perm() != 0o600 {
				t.Errorf("image is %d bytes, mode %v", fi.Size(), fi.Mode())
			}
			if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; used >= size/2 {
				t.Errorf("image is not sparse: %d bytes allocated", used)
			}
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tab, err := parttable.Read(f, size)
			offset, fsSize := int64(0), int64(size)
			if table == "none" {
				if err == nil {
					t.Fatalf("bare image has a table: %+v", tab)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if tab.Kind != table || len(tab.Partitions) != 1 {
					t.Fatalf("table %+v", tab)
				}
				p, err := tab.Partition(1)
				if err != nil || p.Start != 1<<20 {
					t.Fatalf("partition 1: %+v %v", p, err)
				}
				offset, fsSize = p.Start, p.Size
				if table == "mbr" && p.End() != size || table == "gpt" && p.End() != size-33*512 {
					t.Errorf("partition 1 ends at %d in a %d-byte disk", p.End(), size)
				}
			}
			if out := debugfs(t, img, offset, "cat /etc/hostname"); !strings.Contains(out, "guest") {
				t.Errorf("/etc/hostname in the image: %q", out)
			}
			if out := debugfs(t, img, offset, "stat /etc/init.d/rcS"); !strings.Contains(out, `Fast link dest: "/lib/init/rcS"`) {
				t.Errorf("/etc/init.d/rcS in the image: %q", out)
			}
			out := debugfs(t, img, offset, "stats")
			var blocks, bsize int64
			for _, l := range strings.Split(out, "\n") {
				if v, ok := strings.CutPrefix(l, "Block count:"); ok {
					blocks, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				}
				if v, ok := strings.CutPrefix(l, "Block size:"); ok {
					bsize, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				}
			}
			if blocks*bsize > fsSize || blocks*bsize < fsSize-int64(bsize) {
				t.Errorf("filesystem of %d x %d bytes in a partition of %d", blocks, bsize, fsSize)
			}
			if out, err := exec.Command("e2fsck", "-fn", img+"?offset="+strconv.FormatInt(offset, 10)).CombinedOutput(); err != nil {
				t.Errorf("e2fsck: %v: %s", err, out)
			}
			leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(img), ".*"))
			if len(leftovers) > 0 {
				t.Errorf("left behind: %v", leftovers)
			}
		})
	}
}

func TestBuildForce(t *testing.T) {
	need(t, "mkfs.ext4")
	src := source(t)
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(img, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Build(context.Background(), Options{From: src, Image: img, Size: 8 << 20})
	if !sdk.IsKind(err, sdk.KindInvalidConfig) || !strings.Contains(err.Error(), "already exists (use --force") {
		t.Fatalf("without force: %v", err)
	}
	if b, _ := os.ReadFile(img); string(b) != "precious" {
		t.Fatalf("the existing file was changed")
	}
	if err := Build(context.Background(), Options{From: src, Image: img, Size: 8 << 20, Force: true}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(img); fi.Size() != 8<<20 {
		t.Errorf("forced image is %d bytes", fi.Size())
	}
}

func TestBuildFailureRemovesImage(t *testing.T) {
	need(t, "mkfs.ext4")
	src := t.TempDir()
	// A file larger than the filesystem (not zeros: mkfs -d keeps holes
	// sparse): mkfs fails part way.
	if err := os.WriteFile(filepath.Join(src, "big"), bytes.Repeat([]byte{0xAB}, 9<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.raw")
	err := Build(context.Background(), Options{From: src, Image: img, Size: 4 << 20})
	if err == nil {
		t.Fatal("built a 4 MiB image holding a 9 MiB file")
	}
	if sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Errorf("a failed mkfs is not bad input: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left behind after a failure: %v", entries)
	}
}

func TestBuildBadInput(t *testing.T) {
	src := source(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"bad table", Options{From: src, Image: dir + "/a", Table: "dos", Size: 8 << 20}, `table "dos": want one of mbr, gpt, none`},
		{"too small", Options{From: src, Image: dir + "/a", Size: 1 << 20}, "too small: at least 4 MiB"},
		{"odd size", Options{From: src, Image: dir + "/a", Size: 8<<20 + 1}, "not a multiple of 512"},
		{"mbr too large", Options{From: src, Image: dir + "/a", Size: 4 << 40}, "too large for an MBR"},
		{"no from", Options{Image: dir + "/a", Size: 8 << 20}, "no source directory"},
		{"missing from", Options{From: dir + "/nope", Image: dir + "/a", Size: 8 << 20}, "no such file"},
		{"from a file", Options{From: file, Image: dir + "/a", Size: 8 << 20}, "is not a directory"},
		{"no image", Options{From: src, Size: 8 << 20}, "no image file given"},
		{"image dir missing", Options{From: src, Image: dir + "/nope/a", Size: 8 << 20}, "no such file"},
		{"image exists", Options{From: src, Image: file, Size: 8 << 20}, "already exists (use --force to replace it)"},
		{"force onto a directory", Options{From: src, Image: dir + "/sub", Size: 8 << 20, Force: true}, "is not a regular file"},
		{"image inside source", Options{From: src, Image: src + "/etc/disk.raw", Size: 8 << 20}, "is inside the source directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Build(context.Background(), tc.opts)
			if !sdk.IsKind(err, sdk.KindInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build: %v\n  want invalid input containing %q", err, tc.want)
			}
		})
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Errorf("an existing file was changed")
	}
	if _, err := os.Stat(dir + "/a"); err == nil {
		t.Errorf("an image was made from bad input")
	}
}

func TestBuildRefusesAttachedImage(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	need(t, "mkfs.ext4")
	src := source(t)
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := Build(context.Background(), Options{From: src, Image: img, Size: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	_, f, err := loopdev.Attach(img, loopdev.Options{Autoclear: true, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = Build(context.Background(), Options{From: src, Image: img, Size: 8 << 20, Force: true})
	if !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), "is attached to /dev/loop") {
		t.Errorf("replacing an attached image: %v", err)
	}
}
