package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/mountinfo"
	"github.com/subhost/subhost/sdk"
)

// layout is a subhost's tree, opened: HOME, live, and the layers.
type layout struct {
	spec
	home *dir
	// live is HOME/live, nil while it does not exist.
	live *dir
	// image is HOME/NAME.img when there is one.
	image *imageFile
	// mnt is HOME/mnt (image variant only): the mounted image's root
	// once it is mounted, nil while the directory does not exist.
	mnt *dir
	// upper is what live shows (rbind) or the overlay's upper layer:
	// HOME/root, or root inside the mounted image. nil until the image
	// is mounted.
	upper *dir
	// work is the overlay's work directory; nil without BASE.
	work   *dir
	lowers []*dir
}

func (l *layout) overlay() bool { return len(l.bases) > 0 }

func (l *layout) close() {
	for _, d := range append([]*dir{l.home, l.live, l.mnt, l.upper, l.work}, l.lowers...) {
		d.close()
	}
}

// closeImageDirs closes what is held open inside the mounted image.
func (l *layout) closeImageDirs() {
	if l.image == nil {
		return
	}
	for _, d := range []*dir{l.mnt, l.upper, l.work} {
		d.close()
	}
}

// resolve opens the subhost's tree. It changes nothing. In the image
// variant the layers are opened later, by openImageLayers, once the image
// is mounted on mnt.
func resolve(sp spec) (_ *layout, err error) {
	l := &layout{spec: sp}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if l.home, err = openDir(sp.home); err != nil {
		return nil, sdk.Invalidf("home %q: %s", sp.home, describeOpenErr(err))
	}
	if c := badPathChar(l.home.path); c != "" {
		return nil, sdk.Invalidf("home %q is %q, which contains %q: it may not appear in an overlay's paths", sp.home, l.home.path, c)
	}
	if l.live, err = openMountpoint(l.home, "live"); err != nil {
		return nil, err
	}
	if l.image, err = findImage(l.home, sp.name); err != nil {
		return nil, err
	}
	for _, b := range sp.bases {
		d, err := openDir(b)
		if err != nil {
			return nil, sdk.Invalidf("%s: BASE %q: %s", sp.baseWhere, b, describeOpenErr(err))
		}
		l.lowers = append(l.lowers, d)
		if c := badPathChar(d.path); c != "" {
			return nil, sdk.Invalidf("%s: BASE %q is %q, which contains %q: it may not appear in an overlay's paths", sp.baseWhere, b, d.path, c)
		}
	}
	if l.image != nil {
		if l.mnt, err = openMountpoint(l.home, "mnt"); err != nil {
			return nil, err
		}
		return l, nil
	}
	// HOME/root and HOME/work may be symlinks made by the operator.
	if l.upper, err = openAt(l.home, "root", true); err != nil {
		return nil, sdk.Invalidf("root %q: %s", filepath.Join(sp.home, "root"), describeOpenErr(err))
	}
	if l.overlay() {
		if l.work, err = openAt(l.home, "work", true); err != nil {
			return nil, sdk.Invalidf("work %q: %s (BASE is set, so the overlay needs it)", filepath.Join(sp.home, "work"), describeOpenErr(err))
		}
	}
	return l, nil
}

// openMountpoint opens HOME/live or HOME/mnt, which must be real
// directories (not symlinks), or returns nil when it does not exist yet.
func openMountpoint(home *dir, name string) (*dir, error) {
	d, err := openAt(home, name, false)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, sdk.Invalidf("%s %q: %s", name, filepath.Join(home.path, name), describeOpenErr(err))
	}
	return d, nil
}

// openImageLayers opens root and work inside the mounted image. They
// come from a tenant's filesystem: they are opened inside mnt without
// following any symlink, and must be directories of that filesystem.
func (l *layout) openImageLayers() error {
	l.upper.close()
	l.work.close()
	l.upper, l.work = nil, nil
	var err error
	if l.upper, err = openInside(l.mnt, "root"); err != nil {
		return sdk.Invalidf("image %q: /root: %s", l.image.path, describeOpenErr(err))
	}
	if l.overlay() {
		if l.work, err = openInside(l.mnt, "work"); err != nil {
			return sdk.Invalidf("image %q: /work: %s (BASE is set, so the overlay needs it)", l.image.path, describeOpenErr(err))
		}
	}
	for _, d := range []*dir{l.upper, l.work} {
		if d != nil && d.dev != l.mnt.dev {
			return sdk.Invalidf("image %q: %q is not on the image's filesystem", l.image.path, d.path)
		}
	}
	return nil
}

// checkLayers checks the layers against each other and the host: paths
// fit for overlay options, layers that do not overlap, upper and work on
// one mount, work empty or this overlay's own, and neither in use by
// another subhost.
func (l *layout) checkLayers(mounts []mountinfo.Entry) error {
	if c := badPathChar(l.upper.path); c != "" {
		return sdk.Invalidf("root %q contains %q, which may not appear in an overlay's paths", l.upper.path, c)
	}
	if l.work != nil {
		if c := badPathChar(l.work.path); c != "" {
			return sdk.Invalidf("work %q contains %q, which may not appear in an overlay's paths", l.work.path, c)
		}
		if overlaps(l.upper.path, l.work.path) {
			return sdk.Invalidf("root %q and work %q overlap: they must be separate directories", l.upper.path, l.work.path)
		}
		if l.upper.dev != l.work.dev {
			return sdk.Invalidf("root %q and work %q are on different filesystems: overlayfs needs them on one", l.upper.path, l.work.path)
		}
		if l.upper.mntID != l.work.mntID {
			return sdk.Invalidf("root %q and work %q are on different mounts: overlayfs needs them on one", l.upper.path, l.work.path)
		}
		if err := checkWork(l.work); err != nil {
			return err
		}
	}
	for i, lo := range l.lowers {
		for _, d := range []*dir{l.upper, l.work} {
			if d != nil && overlaps(lo.path, d.path) {
				return sdk.Invalidf("%s: BASE %q overlaps the subhost's own %q", l.baseWhere, l.bases[i], d.path)
			}
		}
	}
	return l.checkInUse(mounts)
}

// checkWork accepts an empty work directory, or one holding only what
// overlayfs itself makes there ("work", and "index" with index=on): that
// is this overlay's own, left from an earlier mount.
func checkWork(work *dir) error {
	fd, err := unix.Openat(work.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return sdk.Internalf("read work %q: %w", work.path, err)
	}
	f := os.NewFile(uintptr(fd), work.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return sdk.Internalf("read work %q: %w", work.path, err)
	}
	for _, n := range names {
		var st unix.Stat_t
		if n != "work" && n != "index" {
			return sdk.Conflictf("work %q holds %q: it must be empty or an overlay's own work directory", work.path, n)
		}
		if err := unix.Fstatat(work.fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return sdk.Conflictf("work %q: %q is not a directory: it must be empty or an overlay's own work directory", work.path, n)
		}
	}
	return nil
}

// checkInUse refuses layers that another mount already uses: an overlay
// with the same (or a nested) upper or work directory, or a bind mount of
// them, such as another subhost's live; and in the image variant, the
// image's filesystem mounted anywhere but mnt. Mounts at or under our own
// live, and their propagation copies, are ours.
func (l *layout) checkInUse(mounts []mountinfo.Entry) error {
	ours := l.ownMount(mounts)
	type layer struct {
		what string
		d    *dir
		rel  string
	}
	var layers []layer
	for _, c := range []struct {
		what string
		d    *dir
	}{{"root", l.upper}, {"work", l.work}} {
		if c.d == nil {
			continue
		}
		rel, ok := c.d.relPath(mounts)
		if !ok {
			return sdk.Internalf("%s %q: its mount is not in mountinfo", c.what, c.d.path)
		}
		layers = append(layers, layer{c.what, c.d, rel})
	}
	for i := range mounts {
		m := &mounts[i]
		if ours(m) {
			continue
		}
		if m.FSType == "overlay" {
			_, up, wk := m.OverlayLayers()
			for _, ly := range layers {
				for _, theirs := range []string{up, wk} {
					if theirs != "" && overlaps(ly.d.path, theirs) {
						return sdk.Conflictf("%s %q is in use by the overlay mounted on %q", ly.what, ly.d.path, m.Mountpoint)
					}
				}
			}
			continue
		}
		for _, ly := range layers {
			if ly.d.sameDev(m, mounts) && within(m.Root, ly.rel) && !within(m.Mountpoint, ly.d.path) {
				return sdk.Conflictf("%s %q is in use: it is mounted on %q", ly.what, ly.d.path, m.Mountpoint)
			}
		}
		if l.mnt != nil && l.image != nil && l.mnt.sameDev(m, mounts) && m.Mountpoint != l.mnt.path {
			return sdk.Conflictf("image %q is in use: its filesystem is also mounted on %q", l.image.path, m.Mountpoint)
		}
	}
	return nil
}

// ownMount returns a test for mounts that are this subhost's: mounted at
// or under live or mnt, or propagation copies of those (peers in their
// shared group).
func (l *layout) ownMount(mounts []mountinfo.Entry) func(*mountinfo.Entry) bool {
	var roots []string
	roots = append(roots, l.livePath())
	if l.image != nil {
		roots = append(roots, l.mntPath())
	}
	groups := map[string]bool{}
	for i := range mounts {
		for _, r := range roots {
			if within(mounts[i].Mountpoint, r) {
				if g := mounts[i].SharedGroup(); g != "" {
					groups[g] = true
				}
			}
		}
	}
	return func(m *mountinfo.Entry) bool {
		for _, r := range roots {
			if within(m.Mountpoint, r) {
				return true
			}
		}
		return groups[m.SharedGroup()] || groups[m.MasterGroup()]
	}
}

// livePath and mntPath are HOME/live and HOME/mnt under HOME's real
// path, as mountinfo shows them.
func (l *layout) livePath() string { return filepath.Join(l.home.path, "live") }
func (l *layout) mntPath() string  { return filepath.Join(l.home.path, "mnt") }

// imageFile is HOME/NAME.img and the filesystem found in it.
type imageFile struct {
	path   string
	fstype string
}

// findImage looks for HOME/NAME.img: nil when there is none.
func findImage(home *dir, name string) (*imageFile, error) {
	path := filepath.Join(home.path, name+".img")
	var st unix.Stat_t
	err := unix.Fstatat(home.fd, name+".img", &st, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, sdk.Invalidf("image %q: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, sdk.Invalidf("image %q: not a regular file", path)
	}
	fd, err := unix.Openat(home.fd, name+".img", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, sdk.Invalidf("image %q: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fstype, err := detectFS(f)
	if err != nil {
		return nil, sdk.Invalidf("image %q: %w", path, err)
	}
	// Canonical path, as the loop device will record it.
	if p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err == nil {
		path = p
	}
	return &imageFile{path: path, fstype: fstype}, nil
}
