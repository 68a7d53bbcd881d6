package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/fsdetect"
	"github.com/subhost/subhost/internal/parttable"
	"github.com/subhost/subhost/sdk"
)

// sectorSize is the unit of a loop device's size.
const sectorSize = 512

// image is a DISKS element whose image file was checked.
type image struct {
	disk
	dev, ino uint64
	Size     int64
	// Start and Length are the partition's bytes in the image; a bare
	// filesystem is the whole file.
	Start, Length int64
	// FSType is the root filesystem's type (DISKS[0] only).
	FSType string
}

// Bare says whether the element is a bare filesystem (partition 0).
func (im image) Bare() bool { return im.Part == 0 }

// inspectImages checks every image file, its partition table and, for the
// root, its filesystem. It only reads.
func inspectImages(sp *spec) ([]image, error) {
	var out []image
	var errs []error
	for _, d := range sp.Disks {
		im, err := inspectImage(d, out)
		if err != nil {
			errs = append(errs, sdk.Invalidf("%s: DISKS[%d] %q: %w", sp.Where, d.Index, d.Elem, err))
			continue
		}
		out = append(out, im)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func inspectImage(d disk, earlier []image) (image, error) {
	im := image{disk: d}
	// Symlinks in the path are fine (the config is root's own); what it
	// resolves to must be a regular file.
	f, err := os.OpenFile(d.Image, os.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return im, fmt.Errorf("image %q does not exist", d.Image)
	}
	if err != nil {
		return im, fmt.Errorf("image %q: %w", d.Image, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return im, fmt.Errorf("image %q: %w", d.Image, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return im, fmt.Errorf("image %q is %s, not a regular file", d.Image, fileType(st.Mode))
	}
	im.dev, im.ino, im.Size = st.Dev, st.Ino, st.Size
	for _, e := range earlier {
		if e.dev == im.dev && e.ino == im.ino {
			return im, fmt.Errorf("image %q is the same file as the image of DISKS[%d] %q", d.Image, e.Index, e.Elem)
		}
	}
	if im.Size == 0 {
		return im, fmt.Errorf("image %q is empty", d.Image)
	}
	// A loop device's size is whole 512-byte sectors, so on a smaller
	// file it has none; and the kernel leaves devices without a size out
	// of /proc/partitions, where loopdev looks for attached devices: Down
	// would never find it again, and each boot would leave one behind.
	if im.Size < sectorSize {
		return im, fmt.Errorf("image %q is %d bytes, less than one %d-byte sector: its loop device would have no size", d.Image, im.Size, sectorSize)
	}
	im.Start, im.Length = 0, im.Size
	if d.Part > 0 {
		tab, err := parttable.Read(f, im.Size)
		if errors.Is(err, parttable.ErrNoTable) {
			return im, fmt.Errorf("image %q: %v; for a bare filesystem use partition 0 (%s:0:%s)", d.Image, err, d.Dev, d.Image)
		}
		if err != nil {
			return im, fmt.Errorf("image %q: bad partition table: %v", d.Image, err)
		}
		p, err := tab.Partition(d.Part)
		var npe *parttable.NoPartitionError
		if errors.As(err, &npe) {
			return im, fmt.Errorf("image %q (%s) has %v", d.Image, tab.Kind, err)
		}
		if err != nil {
			return im, fmt.Errorf("image %q: %v", d.Image, err)
		}
		im.Start, im.Length = p.Start, p.Size
	}
	if d.Index != 0 {
		return im, nil // other disks' content is the guest's business
	}
	im.FSType = fsdetect.Detect(io.NewSectionReader(f, im.Start, im.Length))
	if im.FSType != "" {
		return im, nil
	}
	if d.Part > 0 {
		return im, fmt.Errorf("image %q partition %d holds no filesystem subhost recognizes (%s)", d.Image, d.Part, fsdetect.Known)
	}
	hint := ""
	if tab, err := parttable.Read(f, im.Size); err == nil && len(tab.Partitions) > 0 {
		hint = fmt.Sprintf("; it has a%s %s partition table: give a partition number (e.g. %s:%d:%s)",
			map[bool]string{true: "n"}[tab.Kind == "mbr"], strings.ToUpper(tab.Kind), d.Dev, tab.Partitions[0].Index, d.Image)
	}
	return im, fmt.Errorf("image %q holds no filesystem subhost recognizes (%s)%s", d.Image, fsdetect.Known, hint)
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	default:
		return "not a regular file"
	}
}
