package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/guestroot"
	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/internal/mountinfo"
	"github.com/subhost/subhost/sdk"
)

// overlayOptions make an overlay safe over an upper layer a tenant
// controls: no redirect xattr is followed (it could point the merged view
// at any path in the lower layers), no metacopy (a metacopy xattr makes
// overlayfs take a file's data from another path), no index, no xino.
var overlayOptions = [][2]string{
	{"redirect_dir", "nofollow"},
	{"metacopy", "off"},
	{"index", "off"},
	{"xino", "off"},
}

// mountOverlay mounts an overlay of l's layers on target (for a
// privileged guest: the host's root is the overlay's mounter).
func mountOverlay(l *layout, target *dir) error {
	mfd, err := newOverlay(l.lowers, l.upper, l.work, nil, target.path)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", target.fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return sdk.Internalf("mount overlay on %q: move_mount: %w", target.path, err)
	}
	return nil
}

// newOverlay makes a detached overlay mount of the layers with the new
// mount API and returns its descriptor: every layer is handed to the
// kernel as an open descriptor (FSCONFIG_SET_FD, "lowerdir+",
// "upperdir", "workdir"; Linux 6.13 and later), so no path is parsed as
// an option string; the kernel records each layer's path as the caller
// sees it (mountinfo shows those). extra are more options (a flag when
// the value is ""); target names the mount point in messages.
func newOverlay(lowers []*dir, upper, work *dir, extra [][2]string, target string) (int, error) {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, sdk.Internalf("mount overlay on %q: fsopen: %w", target, err)
	}
	defer unix.Close(fsfd)
	set := func(what string, err error) error {
		if err == nil {
			return nil
		}
		return fsError(fsfd, fmt.Sprintf("mount overlay on %q: %s", target, what), err)
	}
	if err := set("source", unix.FsconfigSetString(fsfd, "source", "overlay")); err != nil {
		return -1, err
	}
	// Layers as descriptors need Linux 6.13 or later; say so when an
	// older kernel refuses them.
	byFD := ""
	if kernelBefore(6, 13) {
		byFD = " (layers given as file descriptors need Linux 6.13 or later)"
	}
	for _, lo := range lowers {
		if err := set("lowerdir+ "+lo.path+byFD, unix.FsconfigSetFd(fsfd, "lowerdir+", lo.fd)); err != nil {
			return -1, err
		}
	}
	if err := set("upperdir "+upper.path+byFD, unix.FsconfigSetFd(fsfd, "upperdir", upper.fd)); err != nil {
		return -1, err
	}
	if err := set("workdir "+work.path+byFD, unix.FsconfigSetFd(fsfd, "workdir", work.fd)); err != nil {
		return -1, err
	}
	for _, o := range append(overlayOptions, extra...) {
		if o[1] == "" {
			err = set(o[0], unix.FsconfigSetFlag(fsfd, o[0]))
		} else {
			err = set(o[0]+"="+o[1], unix.FsconfigSetString(fsfd, o[0], o[1]))
		}
		if err != nil {
			return -1, err
		}
	}
	if err := set("create", unix.FsconfigCreate(fsfd)); err != nil {
		return -1, err
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, liveAttrs)
	if err != nil {
		return -1, fsError(fsfd, fmt.Sprintf("mount overlay on %q: fsmount", target), err)
	}
	return mfd, nil
}

// liveAttrs are live's flags on the host side: the guest's root holds
// files the tenant made, and a setuid-root program or a device node
// planted there must not work for the host's users. The guest does not
// see this mount but a clone of it that the init stage's launcher makes
// in the guest's own mount namespace, where setuid works.
const liveAttrs = guestroot.HostSideAttrs

// mountRbind mounts a recursive bind of src on target, cloned through
// src's descriptor, with liveAttrs on its top mount and without noexec
// (which mnt has: the host runs nothing of the image's, the guest does).
// Mounts below it are copies of mounts the host has at src already, with
// their flags.
func mountRbind(src, target *dir) error {
	tfd, err := unix.OpenTree(src.fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_EMPTY_PATH)
	if err != nil {
		return sdk.Internalf("bind %q on %q: open_tree: %w", src.path, target.path, err)
	}
	defer unix.Close(tfd)
	attr := unix.MountAttr{Attr_set: liveAttrs, Attr_clr: unix.MOUNT_ATTR_NOEXEC}
	if err := unix.MountSetattr(tfd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return sdk.Internalf("bind %q on %q: mount_setattr: %w", src.path, target.path, err)
	}
	if err := unix.MoveMount(tfd, "", target.fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return sdk.Internalf("bind %q on %q: move_mount: %w", src.path, target.path, err)
	}
	return nil
}

// mountImage attaches the image to a loop device (autoclear: the kernel
// frees it with its last user) and mounts it on target, nosuid, nodev and
// noexec: the host has no business running the tenant's programs from
// mnt; the guest sees them through its own clone of live, where setuid
// and exec work.
func mountImage(img *imageFile, target *dir) (*loopdev.Device, error) {
	dev, hold, err := loopdev.Attach(img.path, loopdev.Options{Autoclear: true})
	if err != nil {
		return nil, sdk.Internalf("mount image %q on %q: %w", img.path, target.path, err)
	}
	// Mount while holding the device: our close is then not its last.
	defer hold.Close()
	fsfd, err := unix.Fsopen(img.fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, sdk.Internalf("mount image %q (%s) on %q: fsopen: %w", img.path, img.fstype, target.path, err)
	}
	defer unix.Close(fsfd)
	what := fmt.Sprintf("mount image %q (%s on %s) on %q", img.path, img.fstype, dev.Path, target.path)
	if err := unix.FsconfigSetString(fsfd, "source", dev.Path); err != nil {
		return nil, fsError(fsfd, what, err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fsError(fsfd, what, err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return nil, fsError(fsfd, what+": fsmount", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", target.fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return nil, sdk.Internalf("%s: move_mount: %w", what, err)
	}
	return dev, nil
}

// fsError adds the kernel's own explanation, which it queues on the
// filesystem context descriptor ("e overlayfs: ..."), to a failure.
func fsError(fsfd int, what string, err error) error {
	var msgs []string
	buf := make([]byte, 1024)
	for range 16 {
		n, rerr := unix.Read(fsfd, buf)
		if rerr != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) > 0 {
		return sdk.Internalf("%s: %w (%s)", what, err, strings.Join(msgs, "; "))
	}
	return sdk.Internalf("%s: %w", what, err)
}

// liveMatches reports whether the mount m on live is the one l wants:
// an overlay of exactly l's layers with safe options, or a bind of l's
// upper directory.
func (l *layout) liveMatches(m *mountinfo.Entry, mounts []mountinfo.Entry) (bool, string) {
	if !l.overlay() {
		rel, ok := l.upper.relPath(mounts)
		if m.FSType != "overlay" && ok && l.upper.sameDev(m, mounts) && m.Root == rel {
			return true, ""
		}
		return false, fmt.Sprintf("it is not a bind of %q", l.upper.path)
	}
	if m.FSType != "overlay" {
		return false, "it is not an overlay"
	}
	lowers, up, wk := m.OverlayLayers()
	var want []string
	for _, lo := range l.lowers {
		want = append(want, lo.path)
	}
	if up != l.upper.path || wk != l.work.path || !slices.Equal(lowers, want) {
		return false, fmt.Sprintf("its layers are lower %q, upper %q, work %q", strings.Join(lowers, ":"), up, wk)
	}
	if bad := unsafeOverlay(m, overlayDefaults()); bad != "" {
		return false, "it is mounted with " + bad
	}
	// userxattr marks the overlay assembled inside a guest's user
	// namespace: an unprivileged guest needs one, a privileged guest
	// must not get one (stop the subhost to change PRIVATE_USERS).
	if _, ux := m.Option("userxattr"); ux != l.unprivileged {
		if ux {
			return false, "it was mounted for an unprivileged guest (PRIVATE_USERS); stop the subhost to change that"
		}
		return false, "it was mounted for a privileged guest; stop the subhost to make it unprivileged (PRIVATE_USERS)"
	}
	return true, ""
}

// unsafeOverlay names the first option that makes overlay m unsafe over
// a tenant's upper layer, or "". mountinfo shows an option only when it
// differs from the module's default, so defaults fill the gaps.
func unsafeOverlay(m *mountinfo.Entry, def map[string]string) string {
	get := func(k string) string {
		if v, ok := m.Option(k); ok {
			return v
		}
		return def[k]
	}
	if r := get("redirect_dir"); r != "nofollow" && r != "off" {
		return "redirect_dir=" + r
	}
	if v := get("metacopy"); v != "off" {
		return "metacopy=" + v
	}
	if v := get("index"); v != "off" {
		return "index=" + v
	}
	return ""
}

// overlayDefaults are the overlay module's defaults, from its parameters
// (as fs/overlayfs/params.c derives them); unknown ones count as unsafe.
func overlayDefaults() map[string]string {
	param := func(name string) string {
		b, err := os.ReadFile("/sys/module/overlay/parameters/" + name)
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(string(b))
	}
	onOff := func(v string) string {
		switch v {
		case "Y":
			return "on"
		case "N":
			return "off"
		}
		return "unknown"
	}
	def := map[string]string{"metacopy": onOff(param("metacopy")), "index": onOff(param("index"))}
	switch redirect, follow := param("redirect_dir"), param("redirect_always_follow"); {
	case redirect == "Y":
		def["redirect_dir"] = "on"
	case redirect == "N" && follow == "Y":
		def["redirect_dir"] = "follow"
	case redirect == "N" && follow == "N":
		def["redirect_dir"] = "nofollow"
	default:
		def["redirect_dir"] = "unknown"
	}
	return def
}

// kernelBefore reports whether the running kernel is older than
// major.minor.
func kernelBefore(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma < major || ma == major && mi < minor
}
