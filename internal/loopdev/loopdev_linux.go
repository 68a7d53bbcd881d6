package loopdev

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Options say how to attach an image.
type Options struct {
	// Offset is where the device starts in the image, in bytes.
	Offset int64
	// SizeLimit is the device's size in bytes; 0 means up to the end of
	// the image.
	SizeLimit int64
	// ReadOnly makes the device read-only (LO_FLAGS_READ_ONLY), so not
	// even root can write to it.
	ReadOnly bool
	// Autoclear makes the kernel detach the device when its last user
	// closes it (LO_FLAGS_AUTOCLEAR).
	Autoclear bool
	// Tag, at most MaxTag bytes, is stored in the device's lo_file_name
	// (which the kernel keeps but no longer uses: sysfs and losetup show
	// the real backing path), so that an owner can tell its devices from
	// someone else's on the same image. "" stores the image path, as
	// losetup does.
	Tag string
	// Dev and Ino, when Ino is set, name the file the caller checked:
	// the path must still be that file when Attach opens it, not one put
	// in its place since (a symlink to a host disk, say).
	Dev, Ino uint64
}

// MaxTag is the longest Options.Tag (LO_NAME_SIZE less the NUL).
const MaxTag = 63

// Device is an attached loop device.
type Device struct {
	Path         string // e.g. /dev/loop3
	Major, Minor uint32
	// Backing is the backing file's path as the kernel reports it.
	Backing   string
	Offset    int64
	SizeLimit int64
	ReadOnly  bool
	Autoclear bool
	// Tag is the device's lo_file_name: Options.Tag, or the image path it
	// was attached with ("" where the device could be read from sysfs
	// only).
	Tag string

	// The backing file's device and inode, when known: Detach uses them
	// to make sure the device still serves the same file.
	backingDev, backingIno uint64
}

// Name is the kernel's name for the device, e.g. loop3.
func (d Device) Name() string { return filepath.Base(d.Path) }

// ErrBusy is returned (wrapped) by Detach when the device is still open
// elsewhere, e.g. mounted: it is then only marked to go away with its last
// user.
var ErrBusy = errors.New("loop device still in use")

const (
	controlPath = "/dev/loop-control"
	sysBlock    = "/sys/block"
	// procPartitions lists the block devices that have a size.
	procPartitions = "/proc/partitions"
	// attachWait bounds the retries when other processes keep taking the
	// free device we were given: the kernel gives every caller the lowest
	// free one, so a hundred subhosts booting at once (three devices
	// each) race for the same numbers, and a fixed number of tries in a
	// tight loop starved some of them.
	attachWait = 20 * time.Second
)

// Attach attaches image to a free loop device and returns it with an open
// descriptor on it (read-write, or read-only with opts.ReadOnly). The
// caller must close the descriptor; with opts.Autoclear that detaches the
// device unless something else (a mount) still uses it.
func Attach(image string, opts Options) (*Device, *os.File, error) {
	if opts.Offset < 0 || opts.SizeLimit < 0 {
		return nil, nil, fmt.Errorf("attach loop %q: negative offset %d or size limit %d", image, opts.Offset, opts.SizeLimit)
	}
	mode := os.O_RDWR
	if opts.ReadOnly {
		mode = os.O_RDONLY
	}
	backing, err := os.OpenFile(image, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("attach loop %q: %w", image, err)
	}
	// The kernel keeps its own reference to the backing file.
	defer backing.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(backing.Fd()), &st); err != nil {
		return nil, nil, fmt.Errorf("attach loop %q: %w", image, err)
	}
	if opts.Ino != 0 && (st.Dev != opts.Dev || st.Ino != opts.Ino || st.Mode&unix.S_IFMT != unix.S_IFREG) {
		return nil, nil, fmt.Errorf("attach loop %q: it is no longer the file that was checked", image)
	}

	ctl, err := os.OpenFile(controlPath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("attach loop %q: %w", image, err)
	}
	defer ctl.Close()

	var info unix.LoopInfo64
	info.Offset = uint64(opts.Offset)
	info.Sizelimit = uint64(opts.SizeLimit)
	if opts.ReadOnly {
		info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	if opts.Autoclear {
		info.Flags |= unix.LO_FLAGS_AUTOCLEAR
	}
	if len(opts.Tag) > MaxTag {
		return nil, nil, fmt.Errorf("attach loop %q: tag %q is longer than %d bytes", image, opts.Tag, MaxTag)
	}
	tag := opts.Tag
	if tag == "" {
		tag = image
	}
	copy(info.File_name[:MaxTag], tag)

	var lastErr error
	deadline := time.Now().Add(attachWait)
	for try := 0; try == 0 || time.Now().Before(deadline); try++ {
		if try > 0 {
			// Let the winners of this round finish configuring theirs:
			// a jittered wait growing to 10 ms.
			time.Sleep(time.Duration(rand.Int64N(int64(min(try, 10))*int64(time.Millisecond) + 1)))
		}
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, nil, fmt.Errorf("attach loop %q: find a free loop device: %w", image, err)
		}
		dev, err := openLoop(n, os.O_RDWR)
		if err != nil {
			return nil, nil, fmt.Errorf("attach loop %q: %w", image, err)
		}
		err = configure(dev, backing, &info)
		if errors.Is(err, unix.EBUSY) {
			// Another process took this device between GET_FREE and
			// our configure: ask for another.
			dev.Close()
			lastErr = err
			continue
		}
		if err != nil {
			dev.Close()
			return nil, nil, fmt.Errorf("attach loop %q to %s: %w", image, dev.Name(), err)
		}
		d := &Device{
			Path:       dev.Name(),
			Backing:    image,
			Offset:     opts.Offset,
			SizeLimit:  opts.SizeLimit,
			ReadOnly:   opts.ReadOnly,
			Autoclear:  opts.Autoclear,
			Tag:        cstring(info.File_name[:]),
			backingDev: st.Dev,
			backingIno: st.Ino,
		}
		var dst unix.Stat_t
		if err := unix.Fstat(int(dev.Fd()), &dst); err == nil {
			d.Major, d.Minor = unix.Major(dst.Rdev), unix.Minor(dst.Rdev)
		}
		if b, err := readSys(filepath.Join(sysBlock, filepath.Base(d.Path), "loop", "backing_file")); err == nil {
			d.Backing = b
		}
		if opts.ReadOnly {
			// Hand back a read-only descriptor: the device refuses
			// writes anyway.
			ro, err := os.OpenFile(d.Path, os.O_RDONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				dev.Close()
				dev = ro
			}
			// If reopening failed, the read-write descriptor still
			// holds the device; keep it rather than lose the device.
		}
		return d, dev, nil
	}
	return nil, nil, fmt.Errorf("attach loop %q: no free loop device within %s: %w", image, attachWait, lastErr)
}

// configure binds backing to the loop device dev.
func configure(dev, backing *os.File, info *unix.LoopInfo64) error {
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd()), Info: *info}
	err := unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
	if err == nil || !(errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY)) {
		return err
	}
	// Kernels before 5.8 have no LOOP_CONFIGURE.
	if err := unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_SET_FD, int(backing.Fd())); err != nil {
		return err
	}
	if err := unix.IoctlLoopSetStatus64(int(dev.Fd()), info); err != nil {
		unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_CLR_FD, 0)
		return err
	}
	return nil
}

// openLoop opens /dev/loopN, making the node from sysfs when /dev lacks
// it (a static /dev, or a container's).
func openLoop(n int, mode int) (*os.File, error) {
	path := "/dev/loop" + strconv.Itoa(n)
	f, err := os.OpenFile(path, mode|unix.O_CLOEXEC, 0)
	if !errors.Is(err, os.ErrNotExist) {
		return f, err
	}
	majmin, serr := readSys(filepath.Join(sysBlock, "loop"+strconv.Itoa(n), "dev"))
	if serr != nil {
		return nil, err
	}
	var major, minor uint32
	if _, serr := fmt.Sscanf(majmin, "%d:%d", &major, &minor); serr != nil {
		return nil, err
	}
	if serr := unix.Mknod(path, unix.S_IFBLK|0o660, int(unix.Mkdev(major, minor))); serr != nil && !errors.Is(serr, unix.EEXIST) {
		return nil, fmt.Errorf("create %s: %w", path, serr)
	}
	return os.OpenFile(path, mode|unix.O_CLOEXEC, 0)
}

// List returns every attached loop device (with a backing file of at
// least a sector), ordered by number.
//
// The kernel's table of block devices with a size (/proc/partitions) names
// the attached ones in one read; a host keeps every loop device it ever
// made (hundreds, after a while), and looking for each one's backing file
// in sysfs costs milliseconds. Without that table, sysfs is searched.
func List() ([]Device, error) {
	return scan(func(Device) bool { return true })
}

// scan returns the attached loop devices that keep wants, in number
// order. Each one is read through its node (an open, an fstat and
// LOOP_GET_STATUS64), and only those kept get their backing file's path,
// from sysfs: with a hundred guests' devices attached, reading six sysfs
// attributes of every device made each FindByBacking 13-20 ms, and the
// mount stages call it from Validate and Up on every boot.
func scan(keep func(Device) bool) ([]Device, error) {
	dirs, err := attachedDirs()
	if err != nil {
		return nil, err
	}
	var out []Device
	for _, dir := range dirs {
		d, err := probe(dir)
		if err != nil || !keep(d) {
			continue // detached while we looked, or not wanted
		}
		if d.Backing == "" {
			if d.Backing, err = readSys(filepath.Join(dir, "loop", "backing_file")); err != nil {
				continue
			}
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return loopNumber(out[i].Path) < loopNumber(out[j].Path) })
	return out, nil
}

// BackingOf is the backing file's path of the loop device major:minor
// as the kernel reports it, or "" and false when that device is not an
// attached loop device: one sysfs read, where List reads every device.
func BackingOf(major, minor uint32) (string, bool) {
	b, err := readSys(fmt.Sprintf("/sys/dev/block/%d:%d/loop/backing_file", major, minor))
	return b, err == nil && b != ""
}

// probe reads an attached device's attributes through its node, all but
// the backing file's path; where the node cannot be read (a /dev without
// it) from sysfs, with the backing file identified by its path.
func probe(dir string) (Device, error) {
	d := Device{Path: "/dev/" + filepath.Base(dir)}
	fd, err := unix.Open(d.Path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return probeSys(dir)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return probeSys(dir)
	}
	info, err := unix.IoctlLoopGetStatus64(fd)
	if errors.Is(err, unix.ENXIO) {
		return d, err // detached meanwhile
	}
	if err != nil {
		return probeSys(dir)
	}
	d.Major, d.Minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	d.Offset, d.SizeLimit = int64(info.Offset), int64(info.Sizelimit)
	d.ReadOnly = info.Flags&unix.LO_FLAGS_READ_ONLY != 0
	d.Autoclear = info.Flags&unix.LO_FLAGS_AUTOCLEAR != 0
	d.Tag = cstring(info.File_name[:])
	d.backingDev, d.backingIno = info.Device, info.Inode
	return d, nil
}

// probeSys is probe from sysfs alone: no tag, and the backing file
// known by the path the kernel reports.
func probeSys(dir string) (Device, error) {
	d, err := fromSys(dir)
	if err != nil {
		return d, err
	}
	var st unix.Stat_t
	if unix.Stat(strings.TrimSuffix(d.Backing, " (deleted)"), &st) == nil {
		d.backingDev, d.backingIno = st.Dev, st.Ino
	}
	return d, nil
}

// attachedDirs returns the sysfs directories of the loop devices that
// have a size, which every attached one with a non-empty backing file has.
func attachedDirs() ([]string, error) {
	data, err := os.ReadFile(procPartitions)
	if err != nil {
		paths, err := filepath.Glob(filepath.Join(sysBlock, "loop*", "loop", "backing_file"))
		for i, p := range paths {
			paths[i] = filepath.Dir(filepath.Dir(p))
		}
		return paths, err
	}
	var dirs []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || !strings.HasPrefix(f[3], "loop") {
			continue
		}
		if _, err := strconv.Atoi(f[3][len("loop"):]); err != nil {
			continue // a partition of a loop device (loop0p1)
		}
		dirs = append(dirs, filepath.Join(sysBlock, f[3]))
	}
	return dirs, nil
}

func loopNumber(path string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(path), "loop"))
	return n
}

// fromSys reads one loop device's attributes from /sys/block/loopN.
func fromSys(dir string) (Device, error) {
	d := Device{Path: "/dev/" + filepath.Base(dir)}
	backing, err := readSys(filepath.Join(dir, "loop", "backing_file"))
	if err != nil {
		return d, err
	}
	d.Backing = backing
	if s, err := readSys(filepath.Join(dir, "dev")); err == nil {
		fmt.Sscanf(s, "%d:%d", &d.Major, &d.Minor)
	}
	if s, err := readSys(filepath.Join(dir, "loop", "offset")); err == nil {
		d.Offset, _ = strconv.ParseInt(s, 10, 64)
	}
	if s, err := readSys(filepath.Join(dir, "loop", "sizelimit")); err == nil {
		d.SizeLimit, _ = strconv.ParseInt(s, 10, 64)
	}
	if s, err := readSys(filepath.Join(dir, "loop", "autoclear")); err == nil {
		d.Autoclear = s == "1"
	}
	if s, err := readSys(filepath.Join(dir, "ro")); err == nil {
		d.ReadOnly = s == "1"
	}
	return d, nil
}

func readSys(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\n"), nil
}

// FindByBacking returns the attached loop devices whose backing file is
// image: the same file (device and inode), whatever path it was attached
// by. A missing image has none.
func FindByBacking(image string) ([]Device, error) {
	var st unix.Stat_t
	if err := unix.Stat(image, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("find loop devices of %q: %w", image, err)
	}
	out, err := scan(func(d Device) bool { return d.backingIno == st.Ino && d.backingDev == st.Dev })
	if err != nil {
		return nil, fmt.Errorf("find loop devices of %q: %w", image, err)
	}
	return out, nil
}

// FindByTag returns the attached loop devices whose tag (Options.Tag) is
// tag, whatever file they serve now: one replaced or removed since they
// were attached included.
func FindByTag(tag string) ([]Device, error) {
	out, err := scan(func(d Device) bool { return d.Tag == tag })
	if err != nil {
		return nil, fmt.Errorf("find loop devices tagged %q: %w", tag, err)
	}
	return out, nil
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// detachWait bounds how long Detach waits for a busy device's other users
// to close it.
const detachWait = 2 * time.Second

// Detach detaches dev (LOOP_CLR_FD). A device that is no longer attached,
// or now serves another file, is success: the one meant is gone. A device
// still in use (mounted, or open in some process) is only marked to go
// away with its last user. Detach waits up to detachWait for that: a
// moment's user is common, as every scan of loop devices (another
// subhost's FindByBacking, blkid, udev) opens each one, and an autoclear
// device's unmount may take the kernel a moment. Past that it returns an
// error wrapping ErrBusy.
func Detach(dev Device) error {
	deadline := time.Now().Add(detachWait)
	for {
		err := detachOnce(dev)
		if !errors.Is(err, ErrBusy) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// detachOnce is one try of Detach. Trying again is safe: it checks anew
// that the device still serves dev's file, and LOOP_CLR_FD on a device
// already marked changes nothing.
func detachOnce(dev Device) error {
	f, err := os.OpenFile(dev.Path, os.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENXIO) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detach loop %s: %w", dev.Path, err)
	}
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if errors.Is(err, unix.ENXIO) {
		f.Close()
		return nil
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("detach loop %s: %w", dev.Path, err)
	}
	if !sameBacking(dev, info) {
		f.Close()
		return nil
	}
	err = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
	f.Close()
	if errors.Is(err, unix.ENXIO) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detach loop %s (%s): %w", dev.Path, dev.Backing, err)
	}
	// Since Linux 5.x LOOP_CLR_FD on a busy device only sets autoclear;
	// the device goes once our close was its last. Say so if it stays.
	if b, err := readSys(filepath.Join(sysBlock, dev.Name(), "loop", "backing_file")); err == nil && strings.TrimSuffix(b, " (deleted)") == strings.TrimSuffix(dev.Backing, " (deleted)") {
		return fmt.Errorf("detach loop %s (%s): %w; it goes when its last user closes it", dev.Path, dev.Backing, ErrBusy)
	}
	return nil
}

// sameBacking reports whether the device described by info still serves
// the file dev was found with.
func sameBacking(dev Device, info *unix.LoopInfo64) bool {
	if dev.backingIno != 0 {
		return info.Device == dev.backingDev && info.Inode == dev.backingIno
	}
	if dev.Backing == "" {
		return true
	}
	b, err := readSys(filepath.Join(sysBlock, dev.Name(), "loop", "backing_file"))
	if err != nil {
		return false
	}
	return strings.TrimSuffix(b, " (deleted)") == strings.TrimSuffix(dev.Backing, " (deleted)")
}
