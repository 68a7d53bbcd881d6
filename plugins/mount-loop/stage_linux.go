package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/guestroot"
	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/internal/mountinfo"
	"github.com/subhost/subhost/internal/version"
	"github.com/subhost/subhost/sdk"
)

type stage struct{}

var _ sdk.Stage = (*stage)(nil)

// afterAttachHook, when set, runs right after every loop device Up
// attaches: tests make it fail to see Up roll back. Nil in production.
var afterAttachHook func() error

// afterSurveyHook, when set, runs in Up between the survey and the first
// attach, with the subhost's name: tests start another subhost's Up
// there. Nil in production.
var afterSurveyHook func(name string)

// afterLockHook, when set, runs in Up between locking the images and the
// survey, with the subhost's name: tests replace an image there. Nil in
// production.
var afterLockHook func(name string)

// lockTries is how many times Up locks and surveys the images when an
// image is replaced in between, before it gives up.
const lockTries = 3

// upState is what Up hands back: what it attached, for Check and Down.
type upState struct {
	Live  string      `json:"live"`
	Tag   string      `json:"tag"`
	Loops []loopState `json:"loops"`
}

type loopState struct {
	Role      string `json:"role"`
	Guest     string `json:"guest,omitempty"`
	Image     string `json:"image"`
	Device    string `json:"device"`
	Offset    int64  `json:"offset"`
	SizeLimit int64  `json:"size_limit"`
	ReadOnly  bool   `json:"read_only,omitempty"`
}

// mountFlags for the root on the host side: no device node and no
// setuid program from the (tenant-controlled) image works for the host's
// users. The guest does not see this mount but a clone that the init
// stage makes in its own mount namespace, where setuid works; its /dev
// is the init stage's tmpfs.
const mountFlags = unix.MS_NODEV | unix.MS_NOSUID

func (s *stage) Describe() sdk.Description {
	return sdk.Description{
		Name:    "mount-loop",
		Version: version.Version,
		Summary: "attach the DISKS images to loop devices, mount the first element's partition on HOME/live and give the guest /dev/<dev> and /dev/<dev><part> nodes",
		Record:  &sdk.RecordUse{Reads: nil, Writes: []string{sdk.FieldRoot, sdk.FieldDevices}},
		Vars: []sdk.ConfigVar{
			{Name: "DISKS", Doc: "( dev:part:image ... ): each image on a loop device, seen inside as /dev/<dev> and /dev/<dev><part>; the first element's partition is the root (part 0: a bare filesystem); also from the environment"},
		},
	}
}

// specAndSurvey reads the request (spec) and the host (survey), changing
// nothing.
func (s *stage) specAndSurvey(req *sdk.Request) (*spec, []image, []loopSpec, *survey, error) {
	sp, err := parseSpec(req)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	imgs, want, sv, err := surveyAll(sp)
	return sp, imgs, want, sv, err
}

// surveyAll inspects sp's images and surveys the host for them.
func surveyAll(sp *spec) ([]image, []loopSpec, *survey, error) {
	imgs, err := inspectImages(sp)
	if err != nil {
		return nil, nil, nil, err
	}
	want := wantedLoops(imgs)
	sv, err := surveyHost(sp, imgs, want)
	if err != nil {
		return nil, nil, nil, err
	}
	return imgs, want, sv, nil
}

func (s *stage) Validate(ctx context.Context, req *sdk.Request) error {
	_, _, _, _, err := s.specAndSurvey(req)
	return err
}

func (s *stage) Up(ctx context.Context, req *sdk.Request) (_ *sdk.Result, err error) {
	log := sdk.Logger(ctx)
	sp, err := parseSpec(req)
	if err != nil {
		return nil, err
	}
	var (
		imgs []image
		want []loopSpec
		sv   *survey
	)
	for try := 1; ; try++ {
		locked, unlock, err := lockImages(sp)
		if err != nil {
			return nil, sdk.Internalf("lock the images: %w", err)
		}
		if afterLockHook != nil {
			afterLockHook(sp.Name)
		}
		imgs, want, sv, err = surveyAll(sp)
		if err != nil {
			unlock()
			return nil, err
		}
		// The survey opens the images again by path, and the attaches
		// check they are the files it inspected: those must be the
		// files locked, or another Up may hold the lock on them.
		im, replaced := notLocked(imgs, locked)
		if !replaced {
			defer unlock()
			break
		}
		unlock()
		if try == lockTries {
			return nil, sdk.Conflictf("%s: DISKS[%d] %q: image %q was replaced by another file while it was being checked, %d times: try again when it stays put", sp.Where, im.Index, im.Elem, im.Image, lockTries)
		}
		log.Info("image replaced while it was being checked: checking again", "image", im.Image)
	}
	if afterSurveyHook != nil {
		afterSurveyHook(sp.Name)
	}

	// Undo what this call did, newest first, if it fails; what existed
	// before (adopted) stays.
	var undo []func() error
	defer func() {
		if err == nil {
			return
		}
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil {
				log.Warn("roll back", "error", uerr)
			}
		}
	}()
	attached := func() error {
		if afterAttachHook != nil {
			return afterAttachHook()
		}
		return nil
	}

	if !sv.liveExists {
		if err := os.Mkdir(sp.Live, 0o755); err != nil {
			return nil, sdk.Internalf("create %s: %w", sp.Live, err)
		}
		undo = append(undo, func() error { return os.Remove(sp.Live) })
	}

	devs := make([]loopdev.Device, len(want))
	root := imgs[0]
	if d, ok := sv.have[0]; ok {
		log.Info("adopting root mount", "live", sp.Live, "device", d.Path, "image", root.Image)
		// Mounted by an older subhost, perhaps, without nosuid.
		if err := guestroot.SecureHostSide(sp.Live); err != nil {
			return nil, sdk.Internalf("%w", err)
		}
		devs[0] = d
	} else {
		d, err := s.mountRoot(sp, root, want[0], attached)
		if err != nil {
			return nil, err
		}
		undo = append(undo, func() error { return unmount(sp.Live) })
		log.Info("mounted root", "live", sp.Live, "device", d.Path, "image", root.Image, "fstype", root.FSType, "offset", root.Start)
		devs[0] = *d
	}

	for i, w := range want {
		if i == 0 {
			continue
		}
		if d, ok := sv.have[i]; ok {
			log.Info("adopting loop device", "device", d.Path, "image", w.Image, "guest", w.Guest)
			devs[i] = d
			continue
		}
		im := imgs[w.Disk]
		d, f, err := loopdev.Attach(w.Image, loopdev.Options{Offset: w.Offset, SizeLimit: w.SizeLimit, ReadOnly: w.ReadOnly, Tag: sp.Tag, Dev: im.dev, Ino: im.ino})
		if err != nil {
			return nil, sdk.Internalf("%s: %w", imgs[w.Disk].Elem, err)
		}
		f.Close() // not autoclear: it stays attached for the guest
		undo = append(undo, func() error { return loopdev.Detach(*d) })
		log.Info("attached loop device", "device", d.Path, "image", w.Image, "guest", w.Guest, "read_only", w.ReadOnly)
		devs[i] = *d
		if err := attached(); err != nil {
			return nil, err
		}
	}

	res := &sdk.Result{Record: sdk.BootRecord{Root: sp.Live}}
	st := upState{Live: sp.Live, Tag: sp.Tag}
	for i, w := range want {
		d := devs[i]
		st.Loops = append(st.Loops, loopState{Role: w.Role, Guest: w.Guest, Image: w.Image, Device: d.Path, Offset: w.Offset, SizeLimit: w.SizeLimit, ReadOnly: w.ReadOnly})
		if w.Guest != "" {
			res.Record.Devices = append(res.Record.Devices, sdk.Device{GuestName: w.Guest, HostPath: d.Path, Major: d.Major, Minor: d.Minor, ReadOnly: w.ReadOnly})
		}
	}
	if res.State, err = json.Marshal(st); err != nil {
		return nil, sdk.Internalf("encode state: %w", err)
	}
	return res, nil
}

// mountRoot attaches the root partition (autoclear) and mounts it on live
// while it holds the device open, so that the device lives exactly as
// long as the mount.
func (s *stage) mountRoot(sp *spec, root image, w loopSpec, attached func() error) (*loopdev.Device, error) {
	d, f, err := loopdev.Attach(root.Image, loopdev.Options{Offset: w.Offset, SizeLimit: w.SizeLimit, Autoclear: true, Tag: sp.Tag, Dev: root.dev, Ino: root.ino})
	if err != nil {
		return nil, sdk.Internalf("%s: %w", root.Elem, err)
	}
	defer f.Close() // frees the device unless the mount holds it
	if err := attached(); err != nil {
		return nil, err
	}
	if err := unix.Mount(d.Path, sp.Live, root.FSType, mountFlags, ""); err != nil {
		return nil, sdk.Internalf("mount %s (%s, image %q offset %d) on %s: %w (the kernel log may say more)", d.Path, root.FSType, root.Image, w.Offset, sp.Live, err)
	}
	return d, nil
}

func unmount(path string) error {
	err := unix.Unmount(path, unix.UMOUNT_NOFOLLOW)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	return nil
}

// Down unmounts live if this subhost's root is mounted there and detaches
// every loop device on one of its images (from the state and the config)
// that carries its tag. It never detaches lazily: a busy mount or device
// is reported with what holds it. Its steps: discover what is this
// subhost's, unmount its root, detach its devices.
func (s *stage) Down(ctx context.Context, req *sdk.Request) error {
	log := sdk.Logger(ctx)
	t, errs := discover(req, log)
	busy, unmountErrs := t.unmount(log)
	errs = append(errs, unmountErrs...)
	errs = append(errs, t.detach(busy, log)...)
	removeStaleLocks(t.images)
	return errors.Join(errs...)
}

// downImages are the images Down looks at: those in the state and those
// the config names now, whatever else is wrong with the config.
func downImages(req *sdk.Request, st upState) []string {
	var out []string
	for _, l := range st.Loops {
		if !slices.Contains(out, l.Image) {
			out = append(out, l.Image)
		}
	}
	for _, elem := range req.Subhost.Array("DISKS") {
		f := strings.SplitN(elem, ":", 3)
		if len(f) == 3 && filepath.IsAbs(f[2]) && !slices.Contains(out, f[2]) {
			out = append(out, f[2])
		}
	}
	return out
}

// Check reports whether what the state records still exists: live mounted
// from this subhost's root device, every recorded loop device attached to
// its image with its tag.
func (s *stage) Check(ctx context.Context, req *sdk.Request) error {
	if len(req.State) == 0 {
		return sdk.NotFoundf("no state recorded for subhost %q", req.Subhost.Name)
	}
	var st upState
	if err := json.Unmarshal(req.State, &st); err != nil {
		return sdk.Internalf("unreadable state: %w", err)
	}
	mounts, err := mountinfo.Self()
	if err != nil {
		return sdk.Internalf("read mount table: %w", err)
	}
	var errs []error
	for _, l := range st.Loops {
		devs, err := loopdev.FindByBacking(l.Image)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var found *loopdev.Device
		for _, d := range devs {
			if d.Path == l.Device && d.Tag == st.Tag && d.Offset == l.Offset && d.SizeLimit == l.SizeLimit && d.ReadOnly == l.ReadOnly {
				found = &d
				break
			}
		}
		if found == nil {
			errs = append(errs, sdk.NotFoundf("loop device %s on %q (%s %s) is gone", l.Device, l.Image, l.Role, l.Guest))
			continue
		}
		if l.Role == roleRoot {
			top := mountinfo.TopAt(mounts, st.Live)
			if top == nil {
				errs = append(errs, sdk.NotFoundf("%s is not mounted", st.Live))
			} else if !onDevice(top, *found) {
				errs = append(errs, sdk.Conflictf("%s is a mount of %s, not of %s", st.Live, top.Source, found.Path))
			}
		}
	}
	return errors.Join(errs...)
}
