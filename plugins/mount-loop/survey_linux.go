package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/internal/mountinfo"
	"github.com/subhost/subhost/sdk"
)

// Roles of the loop devices a subhost has.
const (
	roleRoot = "root" // the root partition, mounted on HOME/live
	roleDisk = "disk" // a whole disk, /dev/<dev> in the guest
	rolePart = "part" // a partition, /dev/<dev><part> in the guest
)

// loopSpec is a loop device the subhost needs.
type loopSpec struct {
	Role      string
	Disk      int    // index into the images
	Guest     string // guest node name, "" for the root mount
	Image     string
	Offset    int64
	SizeLimit int64 // 0: to the end of the image
	ReadOnly  bool
	Autoclear bool
}

func (s loopSpec) matches(d loopdev.Device) bool {
	return d.Offset == s.Offset && d.SizeLimit == s.SizeLimit && d.ReadOnly == s.ReadOnly && d.Autoclear == s.Autoclear
}

// wantedLoops lists the loop devices for imgs: the root partition's,
// mounted on live (autoclear: the kernel frees it when it is unmounted),
// and one per guest node.
//
// The guest nodes' devices are not autoclear: nothing holds them open
// between Up and the guest's start, so autoclear would free them the
// moment Up closes its descriptor. Down finds them by their backing file
// and owner tag instead. The root disk's nodes are read-only devices: the
// guest must not write raw to the partition the host has mounted (file
// modes would not stop its root), and a separate read-only device per node
// enforces that in the kernel.
func wantedLoops(imgs []image) []loopSpec {
	root := imgs[0]
	want := []loopSpec{{Role: roleRoot, Disk: 0, Image: root.Image, Offset: root.Start, SizeLimit: partLimit(root), Autoclear: true}}
	for i, im := range imgs {
		ro := i == 0
		want = append(want, loopSpec{Role: roleDisk, Disk: i, Guest: im.Dev, Image: im.Image, ReadOnly: ro})
		if !im.Bare() {
			want = append(want, loopSpec{Role: rolePart, Disk: i, Guest: im.PartNode(), Image: im.Image, Offset: im.Start, SizeLimit: im.Length, ReadOnly: ro})
		}
	}
	return want
}

// partLimit is the size limit for a partition's device: none for a bare
// filesystem (the whole file, even if it grows).
func partLimit(im image) int64 {
	if im.Bare() {
		return 0
	}
	return im.Length
}

// survey is what exists on the host for this subhost.
type survey struct {
	mounts []mountinfo.Entry
	// have maps an index of the wanted loops to the device that already
	// serves it (adopted).
	have map[int]loopdev.Device
	// liveExists says whether HOME/live exists.
	liveExists bool
}

// surveyHost finds what exists of this subhost and refuses what belongs
// to someone else. It only reads.
func surveyHost(sp *spec, imgs []image, want []loopSpec) (*survey, error) {
	sv := &survey{have: map[int]loopdev.Device{}}
	var err error
	if sv.mounts, err = mountinfo.Self(); err != nil {
		return nil, sdk.Internalf("read mount table: %w", err)
	}
	if fi, err := os.Stat(sp.Home); err != nil || !fi.IsDir() {
		return nil, sdk.Invalidf("subhost %q: home %s is not a directory", sp.Name, sp.Home)
	}
	fi, err := os.Lstat(sp.Live)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, sdk.Internalf("%s: %w", sp.Live, err)
	case fi.Mode()&os.ModeSymlink != 0:
		return nil, sdk.Invalidf("%s is a symlink; not mounting on it", sp.Live)
	case !fi.IsDir():
		return nil, sdk.Invalidf("%s exists and is not a directory", sp.Live)
	default:
		sv.liveExists = true
	}
	liveTop := mountinfo.TopAt(sv.mounts, sp.Live)

	var errs []error
	for i, im := range imgs {
		devs, err := loopdev.FindByBacking(im.Image)
		if err != nil {
			return nil, sdk.Internalf("%w", err)
		}
		where := fmt.Sprintf("%s: DISKS[%d] %q: image %q", sp.Where, im.Index, im.Elem, im.Image)
		for _, d := range devs {
			mps := mountinfo.Mountpoints(sv.mounts, d.Major, d.Minor)
			if d.Tag != sp.Tag {
				errs = append(errs, sdk.Conflictf("%s is in use: attached to %s %s%s", where, d.Path, owner(d.Tag), mountedOn(mps)))
				continue
			}
			if liveTop != nil && onDevice(liveTop, d) && i == 0 && want[0].matches(d) {
				if _, dup := sv.have[0]; !dup {
					sv.have[0] = d
					continue
				}
			}
			if len(mps) > 0 {
				errs = append(errs, sdk.Conflictf("%s is attached to %s for this subhost but mounted on %s, not on %s", where, d.Path, strings.Join(mps, ", "), sp.Live))
				continue
			}
			adopted := false
			for w, s := range want {
				if _, taken := sv.have[w]; !taken && s.Role != roleRoot && s.Disk == i && s.matches(d) {
					sv.have[w] = d
					adopted = true
					break
				}
			}
			if !adopted {
				errs = append(errs, sdk.Conflictf("%s is attached to %s for this subhost, but not as the config asks now (offset %d, size limit %d, read-only %v, autoclear %v); run \"subhost stop %s\" first", where, d.Path, d.Offset, d.SizeLimit, d.ReadOnly, d.Autoclear, sp.Name))
			}
		}
	}
	if liveTop != nil {
		if _, ok := sv.have[0]; !ok {
			errs = append(errs, sdk.Conflictf("%s is already a mount (%s from %s), not this subhost's root partition", sp.Live, liveTop.FSType, liveTop.Source))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return sv, nil
}

// owner says who attached a loop device, from its tag.
func owner(tag string) string {
	if name, ok := strings.CutPrefix(tag, tagPrefix); ok {
		return fmt.Sprintf("for subhost %q", name)
	}
	return "by something other than subhost (losetup or another program)"
}

func mountedOn(mps []string) string {
	if len(mps) == 0 {
		return ""
	}
	return ", mounted on " + strings.Join(mps, ", ")
}
