package main

import (
	"time"

	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/internal/mountinfo"
	"github.com/subhost/subhost/sdk"
)

// survey is a subhost's opened tree checked against the host's mounts and
// loop devices, with what of it already exists (a hibernated subhost's
// mounts, adopted by Up).
type survey struct {
	*layout
	mounts []mountinfo.Entry
	// mntMounted: the image is mounted on mnt (image variant).
	mntMounted bool
	// liveMounted: live is mounted as wanted.
	liveMounted bool
}

func (p *survey) kind() string {
	if p.overlay() {
		return "overlay"
	}
	return "rbind"
}

// specAndSurvey opens the subhost's tree and checks it and the host, changing
// nothing: what Validate does, and what Up and Check start with.
func specAndSurvey(s sdk.Subhost) (*survey, error) {
	sp, err := parseSpec(s)
	if err != nil {
		return nil, err
	}
	l, err := resolve(sp)
	if err != nil {
		return nil, err
	}
	p := &survey{layout: l}
	if err := p.refresh(); err != nil {
		l.close()
		return nil, err
	}
	return p, nil
}

// refresh rereads the host's mounts and checks the survey against them.
func (p *survey) refresh() error {
	mounts, err := mountinfo.Self()
	if err != nil {
		return sdk.Internalf("read mountinfo: %w", err)
	}
	p.mounts = mounts
	p.mntMounted, p.liveMounted = false, false
	if p.image != nil {
		if err := p.surveyImage(); err != nil {
			return err
		}
		if !p.mntMounted {
			// The layers are inside the image: nothing more to look
			// at until it is mounted, and live cannot be ours yet.
			if m := mountinfo.TopAt(mounts, p.livePath()); m != nil {
				return sdk.Conflictf("live %q has %s %q mounted, but the image %q is not mounted on %q", p.livePath(), m.FSType, m.Source, p.image.path, p.mntPath())
			}
			return nil
		}
	}
	if err := p.checkLayers(mounts); err != nil {
		return err
	}
	top := mountinfo.TopAt(mounts, p.livePath())
	if top == nil {
		return nil
	}
	if ok, why := p.liveMatches(top, mounts); !ok {
		return sdk.Conflictf("live %q already has %s %q mounted, which is not this subhost's root: %s", p.livePath(), top.FSType, top.Source, why)
	}
	p.liveMounted = true
	return nil
}

// surveyImage checks the image's loop devices: each must be mounted only
// on our mnt (the image mounted twice would be corrupted), and whatever
// is on mnt must be the image. When it is, the layers inside are opened.
func (p *survey) surveyImage() error {
	loops, err := p.imageLoops()
	if err != nil {
		return err
	}
	ours := p.ownMount(p.mounts)
	for _, d := range loops {
		mounted := false
		for i := range p.mounts {
			m := &p.mounts[i]
			if maj, min := m.Device(); maj != d.Major || min != d.Minor {
				continue
			}
			mounted = true
			if !ours(m) {
				return sdk.Conflictf("image %q is in use: it is attached to %s and mounted on %q", p.image.path, d.Path, m.Mountpoint)
			}
		}
		if !mounted {
			return sdk.Conflictf("image %q is in use: it is attached to %s, which is not mounted by this subhost", p.image.path, d.Path)
		}
	}
	top := mountinfo.TopAt(p.mounts, p.mntPath())
	if top == nil {
		return nil
	}
	if !onLoop(top, loops) || top.Root != "/" {
		return sdk.Conflictf("mnt %q already has %s %q mounted, not the image %q", p.mntPath(), top.FSType, top.Source, p.image.path)
	}
	// Reopen mnt: the descriptor must be the mounted filesystem's root.
	p.mnt.close()
	if p.mnt, err = openMountpoint(p.home, "mnt"); err != nil {
		return err
	}
	if p.mnt == nil || int(p.mnt.mntID) != top.ID {
		return sdk.Conflictf("mnt %q changed while it was being looked at", p.mntPath())
	}
	p.mntMounted = true
	return p.openImageLayers()
}

// imageLoops finds the image's loop devices. One that is attached but
// not mounted may be an autoclear device the kernel is still freeing
// after an unmount: give it a moment before counting it.
func (p *survey) imageLoops() ([]loopdev.Device, error) {
	for deadline := time.Now().Add(300 * time.Millisecond); ; time.Sleep(50 * time.Millisecond) {
		loops, err := loopdev.FindByBacking(p.image.path)
		if err != nil {
			return nil, sdk.Internalf("%w", err)
		}
		settled := true
		for _, d := range loops {
			if d.Autoclear && !p.devMounted(d) {
				settled = false
			}
		}
		if settled || time.Now().After(deadline) {
			return loops, nil
		}
		if mounts, err := mountinfo.Self(); err == nil {
			p.mounts = mounts
		}
	}
}

func (p *survey) devMounted(d loopdev.Device) bool {
	return len(mountinfo.Mountpoints(p.mounts, d.Major, d.Minor)) > 0
}
