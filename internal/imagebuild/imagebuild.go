package imagebuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/atomicfile"
	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/internal/parttable"
	"github.com/subhost/subhost/sdk"
)

// Options say what to build.
type Options struct {
	// From is the directory whose content becomes the filesystem's root.
	From string
	// Image is the image file to create.
	Image string
	// Table is "mbr" (the default when empty), "gpt" or "none".
	Table string
	// Size is the image size in bytes, a multiple of 512.
	Size int64
	// Force replaces an existing image file.
	Force bool
}

const (
	// Align is where partition 1 starts.
	Align = 1 << 20
	// MinSize is the smallest image Build makes.
	MinSize = 4 << 20
)

// Tables are the accepted values of Options.Table.
var Tables = []string{"mbr", "gpt", "none"}

// ParseSize parses a size like "64M", "1G", "512KiB" or "1048576" (bytes).
// Suffixes K, M, G and T are binary (powers of 1024), with an optional
// "iB" or "B", in either case.
func ParseSize(s string) (int64, error) {
	num := strings.TrimSpace(s)
	mult := int64(1)
	lower := strings.ToLower(num)
	for _, unit := range []string{"ib", "b"} {
		if strings.HasSuffix(lower, unit) && len(lower) > len(unit) {
			lower = lower[:len(lower)-len(unit)]
			break
		}
	}
	if n := len(lower); n > 0 {
		if i := strings.IndexByte("kmgt", lower[n-1]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			lower = lower[:n-1]
		}
	}
	v, err := strconv.ParseInt(lower, 10, 64)
	if err != nil || v <= 0 || lower[0] == '+' {
		return 0, sdk.Invalidf("size %q: want a positive whole number with an optional K, M, G or T suffix (binary), e.g. 64M", s)
	}
	if v > math.MaxInt64/mult {
		return 0, sdk.Invalidf("size %q is too large", s)
	}
	return v * mult, nil
}

// Build makes the image described by opts.
func Build(ctx context.Context, opts Options) (err error) {
	if opts.Table == "" {
		opts.Table = "mbr"
	}
	if err := check(opts); err != nil {
		return err
	}
	mkfs, err := findMkfs()
	if err != nil {
		return err
	}

	dir := filepath.Dir(opts.Image)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(opts.Image)+".tmp-*")
	if err != nil {
		return fmt.Errorf("image %q: %w", opts.Image, err)
	}
	tmpPath := tmp.Name()
	defer func() {
		if err != nil {
			os.Remove(tmpPath)
		}
	}()
	defer tmp.Close()

	if err := tmp.Truncate(opts.Size); err != nil {
		return fmt.Errorf("image %q: %w", opts.Image, err)
	}
	offset, fsSize := int64(0), opts.Size
	switch opts.Table {
	case "mbr":
		offset, fsSize = Align, opts.Size-Align
		err = parttable.WriteMBR(tmp, opts.Size, []parttable.Partition{{Index: 1, Start: offset, Size: fsSize}})
	case "gpt":
		_, end := parttable.GPTUsable(opts.Size)
		offset, fsSize = Align, end-Align
		err = parttable.WriteGPT(tmp, opts.Size, []parttable.Partition{{Index: 1, Start: offset, Size: fsSize}})
	}
	if err != nil {
		return fmt.Errorf("image %q: write partition table: %w", opts.Image, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("image %q: %w", opts.Image, err)
	}

	// mke2fs takes the filesystem size in KiB (with a "k" suffix); with
	// -E offset it starts there and must not write past offset+size.
	args := []string{"-q", "-F", "-t", "ext4", "-d", opts.From}
	if offset > 0 {
		args = append(args, "-E", "offset="+strconv.FormatInt(offset, 10))
	}
	args = append(args, tmpPath, strconv.FormatInt(fsSize/1024, 10)+"k")
	cmd := exec.CommandContext(ctx, mkfs, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("image %q: %s %s: %w: %s", opts.Image, mkfs, strings.Join(args, " "), err, oneLine(out.String()))
	}
	if fi, err := tmp.Stat(); err != nil || fi.Size() != opts.Size {
		return fmt.Errorf("image %q: mkfs.ext4 changed the image size (%v)", opts.Image, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("image %q: %w", opts.Image, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("image %q: %w", opts.Image, err)
	}
	if opts.Force {
		err = os.Rename(tmpPath, opts.Image)
	} else {
		// Refuse an image that appeared while we built ours.
		err = unix.Renameat2(unix.AT_FDCWD, tmpPath, unix.AT_FDCWD, opts.Image, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EEXIST) {
			return sdk.Invalidf("image %q already exists (use --force to replace it)", opts.Image)
		}
	}
	if err != nil {
		return fmt.Errorf("image %q: %w", opts.Image, err)
	}
	// The new name, durable with the image's content synced above.
	if err := atomicfile.SyncDir(filepath.Dir(opts.Image)); err != nil {
		return fmt.Errorf("image %q: %w", opts.Image, err)
	}
	return nil
}

// check validates opts without changing anything.
func check(opts Options) error {
	switch opts.Table {
	case "mbr", "gpt", "none":
	default:
		return sdk.Invalidf("table %q: want one of %s", opts.Table, strings.Join(Tables, ", "))
	}
	if opts.Size < MinSize {
		return sdk.Invalidf("size %d bytes is too small: at least %d MiB", opts.Size, MinSize>>20)
	}
	if opts.Size%512 != 0 {
		return sdk.Invalidf("size %d bytes is not a multiple of 512", opts.Size)
	}
	if opts.Table == "mbr" && opts.Size/512 > 1<<32 {
		return sdk.Invalidf("size %d bytes is too large for an MBR table (2 TiB at most): use --table gpt", opts.Size)
	}
	if opts.From == "" {
		return sdk.Invalidf("no source directory (--from)")
	}
	fi, err := os.Stat(opts.From)
	if err != nil {
		return sdk.Invalidf("source directory %q: %w", opts.From, err)
	}
	if !fi.IsDir() {
		return sdk.Invalidf("source %q is not a directory", opts.From)
	}
	if opts.Image == "" {
		return sdk.Invalidf("no image file given")
	}
	dir, err := filepath.Abs(filepath.Dir(opts.Image))
	if err != nil {
		return sdk.Invalidf("image %q: %w", opts.Image, err)
	}
	if di, err := os.Stat(dir); err != nil {
		return sdk.Invalidf("image %q: %w", opts.Image, err)
	} else if !di.IsDir() {
		return sdk.Invalidf("image %q: %q is not a directory", opts.Image, dir)
	}
	// mkfs -d would copy the growing image into itself.
	if from, err := filepath.EvalSymlinks(opts.From); err == nil {
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			if rel, err := filepath.Rel(from, real); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
				return sdk.Invalidf("image %q is inside the source directory %q", opts.Image, opts.From)
			}
		}
	}
	fi, err = os.Lstat(opts.Image)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return sdk.Invalidf("image %q: %w", opts.Image, err)
	case !opts.Force:
		return sdk.Invalidf("image %q already exists (use --force to replace it)", opts.Image)
	case !fi.Mode().IsRegular():
		return sdk.Invalidf("image %q exists and is not a regular file (%s); not replacing it", opts.Image, fi.Mode().Type())
	}
	// Replacing the file under a loop device would leave that device on
	// the old (unlinked) inode while the new image looks unused: refuse.
	devs, err := loopdev.FindByBacking(opts.Image)
	if err != nil {
		return sdk.Internalf("image %q: cannot tell whether a loop device uses it, so not replacing it: %w", opts.Image, err)
	}
	if len(devs) > 0 {
		return sdk.Conflictf("image %q is attached to %s; not replacing it", opts.Image, devs[0].Path)
	}
	return nil
}

func findMkfs() (string, error) {
	if p, err := exec.LookPath("mkfs.ext4"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("mkfs.ext4 not found: install e2fsprogs (1.43 or newer, for -d)")
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
