package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/subhost/subhost/sdk"
)

// disk is one parsed element of DISKS=( dev:part:image ... ).
type disk struct {
	Index int    // position in DISKS; 0 is the root filesystem
	Elem  string // the element as written
	Dev   string // guest disk name, e.g. "vda"
	Part  int    // partition number, 0 for a bare filesystem
	Image string // absolute path of the image file
}

// PartNode is the guest name of the partition node, "" for a bare
// filesystem.
func (d disk) PartNode() string {
	if d.Part == 0 {
		return ""
	}
	return d.Dev + strconv.Itoa(d.Part)
}

// spec is what the config asks of this stage.
type spec struct {
	Name  string
	Home  string
	Live  string
	Tag   string // owner tag on every loop device this subhost attaches
	Where string // where DISKS was set, for messages
	Disks []disk
}

// tagPrefix starts the tag of every loop device subhost attaches.
const tagPrefix = "subhost:"

// maxDevName is the kernel's disk name limit (DISK_NAME_LEN less room for
// a partition number).
const maxDevName = 24

// parseSpec checks the request's syntax: subhost, DISKS elements, names
// and clashes. It does not look at the host.
func parseSpec(req *sdk.Request) (*spec, error) {
	sh := req.Subhost
	sp := &spec{Name: sh.Name, Home: sh.Home, Where: sh.Where("DISKS")}
	if sh.Name == "" || strings.ContainsAny(sh.Name, "/\x00") || len(tagPrefix+sh.Name) > 63 {
		return nil, sdk.Invalidf("subhost name %q is not usable", sh.Name)
	}
	if sh.Home == "" || !filepath.IsAbs(sh.Home) {
		return nil, sdk.Invalidf("subhost %q: home %q is not an absolute path", sh.Name, sh.Home)
	}
	sp.Home = filepath.Clean(sh.Home)
	sp.Live = filepath.Join(sp.Home, "live")
	sp.Tag = tagPrefix + sh.Name

	elems := sh.Array("DISKS")
	if len(elems) == 0 {
		return nil, sdk.Invalidf("%s: DISKS is not set: want DISKS=( dev:part:image ... ), the first element the root filesystem, e.g. DISKS=( vda:1:/disks/disk1.raw )", sp.Where)
	}
	var errs []error
	nodes := map[string]string{} // guest node name -> what claims it
	for i, elem := range elems {
		d, err := parseDisk(i, elem)
		if err != nil {
			errs = append(errs, sdk.Invalidf("%s: DISKS[%d] %q: %w", sp.Where, i, elem, err))
			continue
		}
		bad := func(format string, args ...any) {
			errs = append(errs, sdk.Invalidf("%s: DISKS[%d] %q: %s", sp.Where, i, elem, fmt.Sprintf(format, args...)))
		}
		if owner, ok := nodes[d.Dev]; ok {
			bad("/dev/%s is already %s", d.Dev, owner)
			continue
		}
		if p := d.PartNode(); p != "" {
			if owner, ok := nodes[p]; ok {
				bad("partition node /dev/%s is already %s", p, owner)
				continue
			}
		}
		// A later disk's partition node may clash with an earlier
		// disk name and the other way round: both are claimed here.
		nodes[d.Dev] = fmt.Sprintf("the disk of DISKS[%d] %q", i, elem)
		if p := d.PartNode(); p != "" {
			nodes[p] = fmt.Sprintf("the partition node of DISKS[%d] %q", i, elem)
		}
		sp.Disks = append(sp.Disks, d)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return sp, nil
}

// parseDisk parses one "dev:part:image" element.
func parseDisk(i int, elem string) (disk, error) {
	d := disk{Index: i, Elem: elem}
	f := strings.SplitN(elem, ":", 3)
	if len(f) != 3 {
		return d, fmt.Errorf("want dev:part:image (three fields separated by \":\"), got %d field(s)", len(f))
	}
	d.Dev, d.Image = f[0], f[2]
	if err := checkDevName(d.Dev); err != nil {
		return d, err
	}
	part := f[1]
	if part == "" || strings.Trim(part, "0123456789") != "" {
		return d, fmt.Errorf("partition %q is not a non-negative integer", part)
	}
	n, err := strconv.Atoi(part)
	if err != nil || n > 1<<16 {
		return d, fmt.Errorf("partition %q is out of range", part)
	}
	d.Part = n
	if p := d.PartNode(); p != "" && sdk.IsReservedDevName(p) {
		return d, fmt.Errorf("partition node name %q is reserved for the guest's own /dev", p)
	}
	if d.Image == "" {
		return d, errors.New("image path is empty")
	}
	if !filepath.IsAbs(d.Image) {
		return d, fmt.Errorf("image %q is not an absolute path", d.Image)
	}
	if strings.ContainsRune(d.Image, 0) {
		return d, fmt.Errorf("image %q contains a NUL byte", d.Image)
	}
	return d, nil
}

func checkDevName(dev string) error {
	if dev == "" {
		return errors.New("device name is empty")
	}
	if len(dev) > maxDevName {
		return fmt.Errorf("device name %q is too long (at most %d characters)", dev, maxDevName)
	}
	if dev[0] < 'a' || dev[0] > 'z' {
		return fmt.Errorf("device name %q must start with a lower-case letter (like vda)", dev)
	}
	for _, c := range dev {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fmt.Errorf("device name %q: only lower-case letters and digits are allowed (like vda)", dev)
		}
	}
	if sdk.IsReservedDevName(dev) {
		return fmt.Errorf("device name %q is reserved for the guest's own /dev", dev)
	}
	if strings.HasPrefix(dev, "tty") || strings.HasPrefix(dev, "pty") {
		return fmt.Errorf("device name %q looks like a terminal; use another name (like vdb)", dev)
	}
	return nil
}
