package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
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

func (*stage) Describe() sdk.Description {
	return sdk.Description{
		Name:    "mount-overlay",
		Version: version.Version,
		Summary: "mount HOME/live: an rbind of HOME/root, or an overlay of it over BASE; from HOME/NAME.img when there is one",
		Record:  &sdk.RecordUse{Reads: []string{sdk.FieldUserns}, Writes: []string{sdk.FieldRoot}},
		Vars: []sdk.ConfigVar{
			{Name: "BASE", Doc: "read-only lower directories (colon-separated, uppermost first) that HOME/root is an overlay over; unset: HOME/root is bind-mounted as it is"},
		},
	}
}

// state is what Up records. Down and Check rediscover everything from
// HOME; this is for the operator reading state.json.
type state struct {
	Live   string   `json:"live"`
	Kind   string   `json:"kind"` // "rbind" or "overlay"
	Upper  string   `json:"upper"`
	Work   string   `json:"work,omitempty"`
	Lowers []string `json:"lowers,omitempty"`
	Image  string   `json:"image,omitempty"`
	Mnt    string   `json:"mnt,omitempty"`
}

func (s *stage) Validate(ctx context.Context, req *sdk.Request) error {
	p, err := specAndSurvey(req.Subhost)
	if err != nil {
		return err
	}
	p.close()
	return nil
}

func (s *stage) Up(ctx context.Context, req *sdk.Request) (_ *sdk.Result, err error) {
	log := sdk.Logger(ctx)
	p, err := specAndSurvey(req.Subhost)
	if err != nil {
		return nil, err
	}
	defer p.close()

	// Undo what this call mounted if a later step fails, newest first.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	if p.image != nil && !p.mntMounted {
		if p.mnt == nil {
			if p.mnt, err = ensureMountpoint(p.home, "mnt"); err != nil {
				return nil, err
			}
		}
		dev, err := mountImage(p.image, p.mnt)
		if err != nil {
			return nil, err
		}
		log.Info("mounted the image", "image", p.image.path, "loop", dev.Path, "fstype", p.image.fstype, "on", p.mntPath())
		undo = append(undo, func() {
			// Our own descriptors inside mnt would keep it busy.
			p.closeImageDirs()
			if errs := p.unmountImage(); len(errs) > 0 {
				log.Error("undo: unmount the image", "error", joinErrs(errs))
			}
		})
		// Now the tenant's root and work can be opened and checked.
		if err := p.refresh(); err != nil {
			return nil, err
		}
		if !p.mntMounted {
			return nil, sdk.Internalf("mount image %q on %q: it is not there afterwards", p.image.path, p.mntPath())
		}
	}

	if !p.liveMounted {
		if p.live == nil {
			if p.live, err = ensureMountpoint(p.home, "live"); err != nil {
				return nil, err
			}
		}
		switch {
		case p.overlay() && p.unprivileged:
			if req.Record.Userns == "" {
				return nil, sdk.Invalidf("%s: PRIVATE_USERS=%s asks for an unprivileged guest, but no stage made its user namespace (the pipeline needs the userns stage first)", req.Subhost.Where("PRIVATE_USERS"), req.Subhost.Scalar("PRIVATE_USERS"))
			}
			err = mountOverlayInUserns(p.layout, p.live, req.Record.Userns)
		case p.overlay():
			err = mountOverlay(p.layout, p.live)
		default:
			err = mountRbind(p.upper, p.live)
		}
		if err != nil {
			return nil, err
		}
		undo = append(undo, func() {
			if mounts, err := mountinfo.Self(); err == nil {
				if err := unmountTree(p.home, p.livePath(), mounts); err != nil {
					log.Error("undo: unmount live", "error", err)
				}
			}
		})
		if err := p.refresh(); err != nil {
			return nil, err
		}
		if !p.liveMounted {
			return nil, sdk.Internalf("mount %q: it is not there afterwards", p.livePath())
		}
		log.Info("mounted live", "live", p.livePath(), "kind", p.kind(), "upper", p.upper.path)
	} else {
		log.Info("live is already mounted as wanted: adopted", "live", p.livePath())
		// Mounted by an older subhost, perhaps, without nosuid.
		if err := guestroot.SecureHostSide(p.livePath()); err != nil {
			return nil, sdk.Internalf("%w", err)
		}
	}

	st := state{Live: p.livePath(), Kind: p.kind(), Upper: p.upper.path}
	if p.work != nil {
		st.Work = p.work.path
	}
	for _, lo := range p.lowers {
		st.Lowers = append(st.Lowers, lo.path)
	}
	if p.image != nil {
		st.Image, st.Mnt = p.image.path, p.mntPath()
	}
	raw, _ := json.Marshal(st)
	rec := sdk.BootRecord{Root: p.livePath()}
	if p.overlay() && p.unprivileged {
		// Adopted or made, the overlay is the user namespace's
		// (liveMatches refuses one that is not).
		rec.RootUserns = req.Record.Userns
	}
	return &sdk.Result{Record: rec, State: raw}, nil
}

func (s *stage) Check(ctx context.Context, req *sdk.Request) error {
	p, err := specAndSurvey(req.Subhost)
	if err != nil {
		return err
	}
	defer p.close()
	if p.image != nil && !p.mntMounted {
		return sdk.NotFoundf("mnt %q: the image %q is not mounted there", p.mntPath(), p.image.path)
	}
	if !p.liveMounted {
		return sdk.NotFoundf("live %q is not mounted", p.livePath())
	}
	return nil
}

// Down unmounts live, then mnt, then detaches the image's loop devices,
// finding them from HOME alone (the config may have changed since Up).
// A mount on live or mnt that is not this subhost's is left alone.
func (s *stage) Down(ctx context.Context, req *sdk.Request) error {
	log := sdk.Logger(ctx)
	sp, err := parseHome(req.Subhost)
	if err != nil {
		return err
	}
	home, err := openDir(sp.home)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return sdk.Internalf("home %q: %w", sp.home, err)
	}
	p := &survey{layout: &layout{spec: sp, home: home}}
	defer p.close()
	p.image = &imageFile{path: filepath.Join(home.path, sp.name+".img")}
	mounts, err := mountinfo.Self()
	if err != nil {
		return sdk.Internalf("read mountinfo: %w", err)
	}
	loops, err := loopdev.FindByBacking(p.image.path)
	if err != nil {
		return sdk.Internalf("%w", err)
	}

	mntTop := mountinfo.TopAt(mounts, p.mntPath())
	mntOurs := mntTop != nil && onLoop(mntTop, loops)
	if mntTop != nil && !mntOurs {
		log.Warn("mnt has a mount that is not this subhost's image: left alone", "mnt", p.mntPath(), "fstype", mntTop.FSType, "source", mntTop.Source)
	}
	// Normally one mount is on live; a stack of ours (left by a bug or a
	// crash) is unmounted one by one, down to the first that is not ours.
	for range 8 {
		top := mountinfo.TopAt(mounts, p.livePath())
		if top == nil {
			break
		}
		ours, err := p.ownLive(top, mounts, mntOurs)
		if err != nil {
			return err
		}
		if !ours {
			log.Warn("live has a mount that is not this subhost's: left alone", "live", p.livePath(), "fstype", top.FSType, "source", top.Source)
			break
		}
		if err := unmountTree(home, p.livePath(), mounts); err != nil {
			// mnt and the loop device stay while live holds them.
			return sdk.Internalf("%w", err)
		}
		log.Info("unmounted live", "live", p.livePath(), "fstype", top.FSType)
		if mounts, err = mountinfo.Self(); err != nil {
			return sdk.Internalf("read mountinfo: %w", err)
		}
	}
	if !mntOurs {
		// This subhost's device is autoclear and lives as long as its
		// mount on mnt: one on the image not mounted there (a losetup,
		// another subhost's DISKS) is someone else's.
		for _, d := range loops {
			log.Info("leaving a loop device on this subhost's image that is not its own", "device", d.Path, "image", p.image.path)
		}
		return nil
	}
	if errs := p.unmountImage(); len(errs) > 0 {
		return sdk.Internalf("%s", joinErrs(errs))
	}
	log.Info("unmounted and detached the image", "image", p.image.path)
	return nil
}

// ownLive reports whether mount m on live is this subhost's: an overlay
// whose upper layer is HOME/root or root in the image on mnt, or a bind of
// one of those.
func (p *survey) ownLive(m *mountinfo.Entry, mounts []mountinfo.Entry, mntOurs bool) (bool, error) {
	var uppers []*dir
	defer func() {
		for _, d := range uppers {
			d.close()
		}
	}()
	if d, err := openAt(p.home, "root", true); err == nil {
		uppers = append(uppers, d)
	}
	if mntOurs {
		mnt, err := openMountpoint(p.home, "mnt")
		if err != nil {
			return false, err
		}
		if mnt != nil {
			if d, err := openInside(mnt, "root"); err == nil {
				uppers = append(uppers, d)
			}
			mnt.close()
		}
	}
	for _, d := range uppers {
		if m.FSType == "overlay" {
			if _, up, _ := m.OverlayLayers(); up == d.path {
				return true, nil
			}
			continue
		}
		if rel, ok := d.relPath(mounts); ok && d.sameDev(m, mounts) && m.Root == rel {
			return true, nil
		}
	}
	return false, nil
}

// unmountImage unmounts mnt if the image is mounted there, then detaches
// the loop device that was (autoclear, it normally goes by itself). Other
// devices on the image are not this subhost's. It keeps going past
// errors.
func (p *survey) unmountImage() []error {
	loops, err := loopdev.FindByBacking(p.image.path)
	if err != nil {
		return []error{err}
	}
	mounts, err := mountinfo.Self()
	if err != nil {
		return []error{err}
	}
	top := mountinfo.TopAt(mounts, p.mntPath())
	if top == nil || !onLoop(top, loops) {
		return nil
	}
	if err := unmountTree(p.home, p.mntPath(), mounts); err != nil {
		// The loop device stays while mnt holds it.
		return []error{err}
	}
	var errs []error
	for _, d := range loops {
		if maj, min := top.Device(); d.Major == maj && d.Minor == min {
			if err := detach(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// detach detaches a loop device of the image, saying what holds it if it
// stays busy. (loopdev.Detach waits a moment for it: an autoclear device
// goes by itself once its filesystem is unmounted, but the kernel may
// take a moment.)
func detach(d loopdev.Device) error {
	err := loopdev.Detach(d)
	if errors.Is(err, loopdev.ErrBusy) {
		var where []string
		if mounts, merr := mountinfo.Self(); merr == nil {
			where = mountinfo.Mountpoints(mounts, d.Major, d.Minor)
		}
		if len(where) > 0 {
			return fmt.Errorf("detach %s (%s): still mounted on %s", d.Path, d.Backing, strings.Join(where, ", "))
		}
		return fmt.Errorf("detach %s (%s): still in use%s", d.Path, d.Backing, heldBy(d.Path))
	}
	return err
}

// onLoop reports whether m is a mount of one of the loop devices.
func onLoop(m *mountinfo.Entry, loops []loopdev.Device) bool {
	for _, d := range loops {
		if maj, min := m.Device(); maj == d.Major && min == d.Minor {
			return true
		}
	}
	return false
}

// ensureMountpoint opens HOME/name, making the directory if it is
// missing.
func ensureMountpoint(home *dir, name string) (*dir, error) {
	if err := unix.Mkdirat(home.fd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, sdk.Internalf("create %q: %w", filepath.Join(home.path, name), err)
	}
	d, err := openMountpoint(home, name)
	if err == nil && d == nil {
		err = sdk.Internalf("create %q: it vanished", filepath.Join(home.path, name))
	}
	return d, err
}

func joinErrs(errs []error) string {
	var s []string
	for _, e := range errs {
		s = append(s, e.Error())
	}
	return strings.Join(s, "; ")
}
