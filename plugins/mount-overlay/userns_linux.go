package main

// How an unprivileged guest's overlay is made.
//
// overlayfs works on its layers with the credentials of whoever mounted
// it: it makes its work directory, copies files up and creates whiteouts
// as its mounter. Mounted by the host's root over the host's view of the
// layers, files the guest's root creates would be stored as the guest's
// host uid (not 0), and overlayfs itself cannot be idmapped afterwards.
// So, as the kernel's documentation for idmapped layers and LXC/Incus
// do, the overlay is assembled inside the guest's user namespace, over
// idmapped layers:
//
//  1. the plugin, as the host's root, clones each lower directory and the
//     directory holding upper and work (one mount: overlayfs wants upper
//     and work on the same one) as detached mounts, idmapped through the
//     guest's user namespace (open_tree(OPEN_TREE_CLONE) + mount_setattr
//     MOUNT_ATTR_IDMAP, which only the host's root may do);
//  2. it runs its own executable inside that user namespace, as its root,
//     through util-linux nsenter (internal/userns.Command: a Go process
//     cannot join a user namespace), handing it the clones;
//  3. that helper makes a mount namespace of its own (which the user
//     namespace then owns, so it may mount there), attaches each clone at
//     the path it has on the host inside a tmpfs that becomes its root
//     (so the kernel records, and mountinfo shows, the layers' real
//     paths, although it may not search the host's directories), opens
//     upper and work below the
//     attached directory without following symlinks, and makes the
//     overlay with fsopen/fsconfig/fsmount, with userxattr (its metadata
//     in user.overlay.* xattrs: trusted.* is the host root's alone);
//  4. it passes the detached overlay back over a socket (SCM_RIGHTS) and
//     exits; the plugin attaches it on HOME/live as for a privileged
//     guest.
//
// The overlay's superblock then belongs to the guest's user namespace and
// its mounter is the guest's root: copies-up and new files go through the
// idmapped upper layer and are stored as uid 0; files show on the host
// as the guest's host ids, inside the guest as its own. The init stage
// gives the guest a plain clone of it (the boot record's RootUserns
// says so).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/mountfd"
	"github.com/subhost/subhost/internal/nsfs"
	"github.com/subhost/subhost/internal/userns"
	"github.com/subhost/subhost/sdk"
)

// overlayHelperArg, as the plugin's first argument, makes it the helper
// that assembles the overlay inside the guest's user namespace.
const overlayHelperArg = "__overlay-in-userns"

// The helper's descriptors: the socket it answers on, the clone of the
// directory holding upper and work, then one clone per lower layer.
const (
	helperSockFD       = 3
	helperCommonFD     = 4
	helperFirstLowerFD = 5
)

// helperSpec is the helper's second argument, as JSON.
type helperSpec struct {
	// Common is the host path of the directory whose clone is at
	// helperCommonFD; Upper and Work are below it.
	Common      string
	Upper, Work helperLayer
	// Lowers are the host paths of the lower layers, uppermost first,
	// cloned at helperFirstLowerFD...
	Lowers []string
	// Target names live, for messages.
	Target string
}

// helperLayer is a directory below Common, with its device and inode as
// the plugin found them: the helper opens the same one or fails.
type helperLayer struct {
	Rel      string
	Dev, Ino uint64
}

// mountOverlayInUserns mounts the overlay of l's layers on target,
// assembled inside the user namespace pinned at usernsPath.
func mountOverlayInUserns(l *layout, target *dir, usernsPath string) error {
	user, err := nsfs.Open(usernsPath, unix.CLONE_NEWUSER)
	if err == nil && user == nil {
		err = os.ErrNotExist
	}
	if err != nil {
		return sdk.NotFoundf("the guest's user namespace %s: %w", usernsPath, err)
	}
	defer user.Close()

	commonPath := commonDir(l.upper.path, l.work.path)
	common, err := openDir(commonPath)
	if err != nil {
		return sdk.Internalf("open %q: %w", commonPath, err)
	}
	defer common.close()
	if commonPath == "/" || common.mntID != l.upper.mntID {
		return sdk.Invalidf("root %q and work %q: an unprivileged guest's overlay needs a directory other than / holding both on their mount (%q is not)", l.upper.path, l.work.path, commonPath)
	}
	sp := helperSpec{Common: common.path, Target: target.path}
	for _, d := range []struct {
		layer *helperLayer
		d     *dir
	}{{&sp.Upper, l.upper}, {&sp.Work, l.work}} {
		rel, _ := filepath.Rel(common.path, d.d.path)
		*d.layer = helperLayer{Rel: rel, Dev: d.d.dev, Ino: d.d.ino}
	}

	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return sdk.Internalf("socketpair: %w", err)
	}
	answers := os.NewFile(uintptr(pair[0]), "overlay answer")
	defer answers.Close()
	files = append(files, os.NewFile(uintptr(pair[1]), "overlay socket"))
	clone := func(d *dir) error {
		// A layer never shows the mounts below it: one mount alone. d
		// keeps its descriptor (dir.close closes it).
		f, err := mountfd.CloneFD(d.fd, d.path, mountfd.Options{Userns: user})
		if err != nil {
			var probe *mountfd.ProbeError
			if errors.As(err, &probe) {
				return sdk.Invalidf("an unprivileged guest's overlay layer: %w", err)
			}
			return sdk.Internalf("%w", err)
		}
		files = append(files, f)
		return nil
	}
	if err := clone(common); err != nil {
		return err
	}
	for _, lo := range l.lowers {
		if err := clone(lo); err != nil {
			return err
		}
		sp.Lowers = append(sp.Lowers, lo.path)
	}
	js, err := json.Marshal(sp)
	if err != nil {
		return sdk.Internalf("%w", err)
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return sdk.Internalf("open the plugin's executable: %w", err)
	}
	defer self.Close()
	cmd, err := userns.Command(usernsPath, "", self, files, overlayHelperArg, string(js))
	if err != nil {
		return sdk.Internalf("%w", err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if msg == "" {
			msg = err.Error()
		}
		return sdk.Internalf("mount overlay on %q inside the guest's user namespace: %s", target.path, msg)
	}
	mfd, err := receiveFD(answers)
	if err != nil {
		return sdk.Internalf("mount overlay on %q inside the guest's user namespace: %w", target.path, err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", target.fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return sdk.Internalf("mount overlay on %q: move_mount: %w", target.path, err)
	}
	return nil
}

// receiveFD reads the one descriptor the helper sent on sock.
func receiveFD(sock *os.File) (int, error) {
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("the helper sent no mount: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("the helper's answer holds no mount")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("the helper's answer holds no mount")
	}
	return fds[0], nil
}

// layersDir is where the helper mounts the tmpfs that becomes its root
// (a directory every host has and anyone may search).
const layersDir = "/tmp"

// attachBelow attaches the detached mount at fd on path below the
// directory open as tmp (the helper's tmpfs), making the directories on
// the way that are missing. Nothing there is the tenant's: the tmpfs is
// the helper's, and a directory inside a clone attached earlier exists
// already (it is a host path).
func attachBelow(tmp, fd int, path string) error {
	rel := strings.TrimPrefix(path, "/")
	parts := strings.Split(rel, "/")
	for i := range parts {
		err := unix.Mkdirat(tmp, strings.Join(parts[:i+1], "/"), 0o700)
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("attach the idmapped clone of %s: mkdir: %w", path, err)
		}
	}
	target, err := unix.Openat2(tmp, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fmt.Errorf("attach the idmapped clone of %s: %w", path, err)
	}
	defer unix.Close(target)
	if err := unix.MoveMount(fd, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the idmapped clone of %s: move_mount: %w", path, err)
	}
	return nil
}

// overlayHelperMain is the helper (see the top of this file); it runs
// inside the guest's user namespace as its root, started by nsenter.
func overlayHelperMain() {
	// The mount namespace made below is this thread's alone.
	runtime.LockOSThread()
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "the overlay helper is run by the mount-overlay stage, not by hand")
		os.Exit(2)
	}
	if err := overlayHelper(os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func overlayHelper(arg string) error {
	var sp helperSpec
	if err := json.Unmarshal([]byte(arg), &sp); err != nil {
		return fmt.Errorf("bad helper argument: %w", err)
	}
	// Nothing else this process got from nsenter may stay open.
	if err := unix.CloseRange(uint(helperFirstLowerFD+len(sp.Lowers)), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return err
	}
	// A mount namespace of the guest's user namespace: the helper may
	// mount there, and nothing it does there reaches the host's.
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare the mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	// The helper, a host uid range, cannot search the host directories
	// the layers lie in ($SUBHOST is best 0700). So the clones are
	// attached at their host paths in a tmpfs of its own, which then
	// becomes its root: the kernel records each layer's path as seen
	// from there, the host's path, and mountinfo shows those.
	if err := unix.Mount("overlay-layers", layersDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=700,size=16k"); err != nil {
		return fmt.Errorf("a tmpfs on %s for the layers: %w", layersDir, err)
	}
	tmp, err := unix.Open(layersDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", layersDir, err)
	}
	// Shallow paths first: a layer below another's directory is
	// attached on top of that one's clone.
	type attachment struct {
		fd   int
		path string
	}
	all := []attachment{{helperCommonFD, sp.Common}}
	for i, p := range sp.Lowers {
		all = append(all, attachment{helperFirstLowerFD + i, p})
	}
	slices.SortStableFunc(all, func(a, b attachment) int {
		return strings.Count(a.path, "/") - strings.Count(b.path, "/")
	})
	for _, a := range all {
		if err := attachBelow(tmp, a.fd, a.path); err != nil {
			return err
		}
	}
	if procFD, err = unix.Open("/proc", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		return fmt.Errorf("open /proc: %w", err)
	}
	if err := unix.Fchdir(tmp); err != nil {
		return fmt.Errorf("chdir %s: %w", layersDir, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot %s: %w", layersDir, err)
	}
	layer := func(fd int, path string) (*dir, error) {
		d, err := newDir(fd)
		if err != nil {
			return nil, fmt.Errorf("the idmapped clone of %s: %w", path, err)
		}
		if d.path != path {
			d.close()
			return nil, fmt.Errorf("the idmapped clone of %s shows as %s once attached", path, d.path)
		}
		return d, nil
	}
	common, err := layer(helperCommonFD, sp.Common)
	if err != nil {
		return err
	}
	below := func(what string, ly helperLayer) (*dir, error) {
		fd, err := unix.Openat2(common.fd, ly.Rel, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
		})
		if err != nil {
			return nil, fmt.Errorf("%s %s: %s", what, filepath.Join(sp.Common, ly.Rel), describeOpenErr(err))
		}
		d, err := newDir(fd)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, filepath.Join(sp.Common, ly.Rel), err)
		}
		if d.dev != ly.Dev || d.ino != ly.Ino {
			d.close()
			return nil, fmt.Errorf("%s %s changed while the overlay was being made", what, d.path)
		}
		return d, nil
	}
	upper, err := below("root", sp.Upper)
	if err != nil {
		return err
	}
	work, err := below("work", sp.Work)
	if err != nil {
		return err
	}
	var lowers []*dir
	for i, path := range sp.Lowers {
		d, err := layer(helperFirstLowerFD+i, path)
		if err != nil {
			return err
		}
		lowers = append(lowers, d)
	}
	mfd, err := newOverlay(lowers, upper, work, [][2]string{{"userxattr", ""}}, sp.Target)
	if err != nil {
		return err
	}
	if err := unix.Sendmsg(helperSockFD, []byte{0}, unix.UnixRights(mfd), nil, 0); err != nil {
		return fmt.Errorf("send the overlay to the plugin: %w", err)
	}
	return nil
}
