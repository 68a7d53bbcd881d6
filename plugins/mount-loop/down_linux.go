package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/holders"
	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/internal/mountinfo"
	"github.com/subhost/subhost/sdk"
)

// teardown is what Down found to be this subhost's: the loop devices it
// tagged, on which images, and where its root may be mounted.
type teardown struct {
	tag    string
	lives  []string
	images []string
}

// discover finds, from the state, the config and the host, what Down must
// look at. It works from an empty or unreadable state too: the tag and
// live follow from the subhost's name and home, and whatever loop device
// is mounted on live has its image found (its tag decides later whether
// it is ours).
func discover(req *sdk.Request, log hclog.Logger) (teardown, []error) {
	var st upState
	if len(req.State) > 0 {
		if err := json.Unmarshal(req.State, &st); err != nil {
			log.Warn("ignoring unreadable state", "error", err)
			st = upState{}
		}
	}
	t := teardown{tag: tagPrefix + req.Subhost.Name}
	if st.Tag != "" {
		t.tag = st.Tag
	}
	if st.Live != "" {
		t.lives = append(t.lives, st.Live)
	}
	if h := req.Subhost.Home; filepath.IsAbs(h) {
		if l := filepath.Join(filepath.Clean(h), "live"); !slices.Contains(t.lives, l) {
			t.lives = append(t.lives, l)
		}
	}
	t.images = downImages(req, st)
	mounts, err := mountinfo.Self()
	if err != nil {
		return t, []error{sdk.Internalf("read mount table: %w", err)}
	}
	for _, live := range t.lives {
		top := mountinfo.TopAt(mounts, live)
		if top == nil {
			continue
		}
		// Whatever loop device is mounted there (not only one of ours:
		// its tag decides later).
		if b, ok := loopdev.BackingOf(top.Device()); ok {
			b = strings.TrimSuffix(b, " (deleted)")
			if filepath.IsAbs(b) && !slices.Contains(t.images, b) {
				t.images = append(t.images, b)
			}
		}
	}
	return t, nil
}

// ours finds this subhost's devices afresh, by their tag: the image may
// have been replaced since Up (a new version moved into place, a new
// file at the path) or removed, and the devices still serve the old
// file. With log set it notes the devices on its images that are
// someone else's.
func (t teardown) ours(log hclog.Logger) ([]loopdev.Device, []error) {
	var errs []error
	out, err := loopdev.FindByTag(t.tag)
	if err != nil {
		errs = append(errs, err)
	}
	// And by backing file, as before: what this finds is the same, but
	// where a device's node cannot be read, which hides its tag.
	for _, img := range t.images {
		devs, err := loopdev.FindByBacking(img)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, d := range devs {
			switch {
			case d.Tag != t.tag:
				if log != nil {
					log.Info("leaving a loop device on this subhost's image that is not its own", "device", d.Path, "image", img, "owner", owner(d.Tag))
				}
			case !slices.ContainsFunc(out, func(o loopdev.Device) bool { return o.Path == d.Path }):
				out = append(out, d)
			}
		}
	}
	return out, errs
}

// unmount takes this subhost's root off each live, top mount first, and
// returns the devices it had to leave mounted (not to be detached).
func (t teardown) unmount(log hclog.Logger) (map[string]bool, []error) {
	ours, errs := t.ours(log)
	isOurs := func(major, minor uint32) bool {
		return slices.ContainsFunc(ours, func(d loopdev.Device) bool { return d.Major == major && d.Minor == minor })
	}
	busy := map[string]bool{}
	for _, live := range t.lives {
		for range 16 { // mounts stacked on live, ours on top
			mounts, err := mountinfo.Self()
			if err != nil {
				errs = append(errs, sdk.Internalf("read mount table: %w", err))
				break
			}
			top := mountinfo.TopAt(mounts, live)
			if top == nil {
				break
			}
			if !isOurs(top.Device()) {
				errs = append(errs, sdk.Conflictf("%s is a mount of %s (%s), not of this subhost's root partition: leaving it", live, top.Source, top.FSType))
				break
			}
			if err := unix.Unmount(live, unix.UMOUNT_NOFOLLOW); err != nil {
				if errors.Is(err, unix.EBUSY) {
					errs = append(errs, sdk.Conflictf("unmount %s: busy (not detaching it lazily): %s", live, heldBy(holders.Target{FS: unix.Mkdev(top.Major, top.Minor)}, live, mounts)))
				} else {
					errs = append(errs, sdk.Internalf("unmount %s: %w", live, err))
				}
				busy[devKey(top.Device())] = true
				break
			}
			log.Info("unmounted", "live", live, "source", top.Source)
		}
	}
	return busy, errs
}

// detach detaches this subhost's devices that are mounted nowhere. The
// root device went with its mount (autoclear), so they are looked for
// again.
func (t teardown) detach(busy map[string]bool, log hclog.Logger) []error {
	ours, errs := t.ours(nil)
	mounts, err := mountinfo.Self()
	if err != nil {
		return append(errs, sdk.Internalf("read mount table: %w", err))
	}
	for _, d := range ours {
		if busy[devKey(d.Major, d.Minor)] {
			continue
		}
		if mps := mountinfo.Mountpoints(mounts, d.Major, d.Minor); len(mps) > 0 {
			errs = append(errs, sdk.Conflictf("loop device %s (%s) is still mounted on %s: not detaching it", d.Path, d.Backing, strings.Join(mps, ", ")))
			continue
		}
		err := loopdev.Detach(d)
		if errors.Is(err, loopdev.ErrBusy) {
			errs = append(errs, sdk.Conflictf("%v: %s", err, heldBy(holders.Target{Block: unix.Mkdev(d.Major, d.Minor)}, "", nil)))
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("detached loop device", "device", d.Path, "image", d.Backing)
	}
	return errs
}

func devKey(major, minor uint32) string { return fmt.Sprintf("%d:%d", major, minor) }

// onDevice reports whether mount m is of loop device d's file system.
func onDevice(m *mountinfo.Entry, d loopdev.Device) bool {
	maj, min := m.Device()
	return maj == d.Major && min == d.Minor
}
