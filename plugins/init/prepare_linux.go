package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/fsdetect"
	"github.com/subhost/subhost/internal/guestroot"
	"github.com/subhost/subhost/internal/idrange"
	"github.com/subhost/subhost/internal/launcher"
	"github.com/subhost/subhost/internal/mountfd"
	"github.com/subhost/subhost/internal/nsfs"
	"github.com/subhost/subhost/sdk"
)

// prepared holds the detached mounts the plugin makes as the host's root
// for the launcher to attach inside the guest's mount namespace
// (internal/mountfd), in the order they are passed to it.
type prepared struct {
	files []*os.File
	// ids is the guest's id range; zero for a privileged guest.
	ids idrange.Range
}

func (p *prepared) close() {
	for _, f := range p.files {
		f.Close()
	}
}

// add appends f and returns the descriptor number the launcher will find
// it at: the launcher's extra descriptors start at launcher.FirstPreparedFD.
func (p *prepared) add(f *os.File) int {
	p.files = append(p.files, f)
	return launcher.FirstPreparedFD + len(p.files) - 1
}

// wantsUserns tells whether the config asks for an unprivileged guest.
func wantsUserns(sub *sdk.Subhost) bool {
	spec, err := idrange.Parse(sub.Scalar("PRIVATE_USERS"))
	return err == nil && spec.Enabled
}

// prepare makes the detached mounts cfg names: for an unprivileged guest
// the idmapped clone of its root and its /dev; in both modes the MOUNTS
// data disks.
func prepare(req *sdk.Request, cfg *launcher.Config) (_ *prepared, err error) {
	rec := &req.Record
	p := &prepared{}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	mounts, err := parseMounts(&req.Subhost)
	if err != nil {
		return nil, err
	}
	var userns *os.File
	if rec.Userns != "" {
		p.ids = idrange.Range{Base: rec.UsernsBase, Size: rec.UsernsSize}
		if p.ids.Size == 0 || p.ids.Base == 0 {
			return nil, sdk.Invalidf("boot record: user namespace %s without its id range", rec.Userns)
		}
		userns, err = nsfs.Open(rec.Userns, unix.CLONE_NEWUSER)
		if err == nil && userns == nil {
			err = os.ErrNotExist
		}
		if err != nil {
			return nil, sdk.NotFoundf("the guest's user namespace %s: %w", rec.Userns, err)
		}
		defer userns.Close()
		root, err := guestRootClone(rec, userns, p.ids)
		if err != nil {
			return nil, err
		}
		cfg.Unprivileged = true
		cfg.RootFD = p.add(root)
		dev, err := guestDev(rec.Devices, p.ids)
		if err != nil {
			return nil, sdk.Internalf("the guest's /dev: %w", err)
		}
		cfg.DevFD = p.add(dev)
	}
	for _, m := range mounts {
		f, err := dataDisk(m, rec.Devices, userns)
		if err != nil {
			return nil, err
		}
		cfg.Mounts = append(cfg.Mounts, launcher.Mount{Path: m.Path, FD: p.add(f)})
	}
	return p, nil
}

// guestRootClone clones an unprivileged guest's root for it. A root the
// host sees unmapped is idmapped through the guest's user namespace (the
// probe and the clone are one: a root the kernel cannot idmap fails
// here, before anything of the guest runs). A root that namespace owns
// (RootUserns: an overlay assembled inside it) already shows the guest's
// ids and cannot be idmapped again: it is cloned as it is, once its top
// directory is seen to be the guest's own (not, say, an overlay the
// host's root mounted). Either way setuid works in the clone.
func guestRootClone(rec *sdk.BootRecord, userns *os.File, ids idrange.Range) (*os.File, error) {
	if rec.RootUserns == "" {
		root, err := mountfd.CloneAt(rec.Root, mountfd.Options{Recursive: true, Userns: userns, Clear: unix.MOUNT_ATTR_NOSUID})
		if err != nil {
			return nil, sdk.Invalidf("the guest root: %w", err)
		}
		return root, nil
	}
	root, err := mountfd.CloneAt(rec.Root, mountfd.Options{Recursive: true, Clear: unix.MOUNT_ATTR_NOSUID})
	if err != nil {
		return nil, sdk.Internalf("the guest root: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(root.Fd()), &st); err != nil {
		root.Close()
		return nil, sdk.Internalf("the guest root: %w", err)
	}
	if st.Uid-ids.Base >= ids.Size {
		root.Close()
		return nil, sdk.Invalidf("the guest root %s is owned by host uid %d, outside the guest's range %d+%d: it is not a file system its user namespace owns, as the boot record says", rec.Root, st.Uid, ids.Base, ids.Size)
	}
	return root, nil
}

// guestDev makes the unprivileged guest's /dev as a detached tmpfs with
// its standard and disk nodes: a tmpfs mounted inside the user namespace
// would be nodev, and mknod of a device is refused there. The tmpfs and
// the nodes belong to the guest's root (ids.Base); the launcher adds
// devpts, shm, the links and the console inside.
func guestDev(devices []sdk.Device, ids idrange.Range) (*os.File, error) {
	uid := strconv.FormatUint(uint64(ids.Base), 10)
	dev, err := mountfd.New("tmpfs", "", [][2]string{{"mode", "755"}, {"size", "65536k"}, {"uid", uid}, {"gid", uid}}, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_STRICTATIME)
	if err != nil {
		return nil, err
	}
	fd := int(dev.Fd())
	nodes := append(launcher.StandardNodes(), launcher.DiskNodes(launcherDevices(devices))...)
	for _, n := range nodes {
		if err := unix.Mknodat(fd, n.Name, n.Type|n.Perm, int(unix.Mkdev(n.Major, n.Minor))); err != nil {
			dev.Close()
			return nil, fmt.Errorf("mknod %s: %w", n.Name, err)
		}
		if err := unix.Fchownat(fd, n.Name, int(ids.Base), int(ids.Base), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			dev.Close()
			return nil, fmt.Errorf("chown %s: %w", n.Name, err)
		}
	}
	return dev, nil
}

// dataDisk mounts a MOUNTS element's device, detached, with the type its
// superblock names; idmapped through userns when there is one.
func dataDisk(m dataMount, devices []sdk.Device, userns *os.File) (*os.File, error) {
	var dev *sdk.Device
	for i := range devices {
		if devices[i].GuestName == m.Dev {
			dev = &devices[i]
		}
	}
	if dev == nil || dev.HostPath == "" {
		return nil, sdk.NotFoundf("MOUNTS element %q: the boot record has no host node for %s", m.Elem, m.Dev)
	}
	fstype, err := detect(dev.HostPath)
	if err != nil {
		return nil, sdk.Invalidf("MOUNTS element %q: %v", m.Elem, err)
	}
	var opts [][2]string
	var attrs uint64 = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	if m.ReadOnly || dev.ReadOnly {
		opts = append(opts, [2]string{"ro", ""})
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	f, err := mountfd.New(fstype, dev.HostPath, opts, attrs)
	if err != nil {
		return nil, sdk.Internalf("MOUNTS element %q: %w", m.Elem, err)
	}
	if userns != nil {
		if err := mountfd.Idmap(f, userns); err != nil {
			f.Close()
			return nil, sdk.Invalidf("MOUNTS element %q: %w", m.Elem, err)
		}
	}
	return f, nil
}

func detect(hostPath string) (string, error) {
	f, err := os.Open(hostPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fstype := fsdetect.Detect(io.NewSectionReader(f, 0, 1<<20))
	if fstype == "" {
		return "", fmt.Errorf("%s holds no file system subhost recognizes (%s)", hostPath, fsdetect.Known)
	}
	return fstype, nil
}

// placeGuest moves pid into each of dirs: the host does it for an
// unprivileged guest, whose launcher may not leave the host's cgroups by
// itself (cgroup v2 wants write access to the common ancestor).
func placeGuest(pid int, dirs []string) error {
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("move the guest into cgroup %s: %w", d, err)
		}
	}
	return nil
}

// prepareUnprivileged prepares cfg's detached mounts and, for an
// unprivileged guest, gives its root its console and empties
// cfg.Cgroups: the plugin places the guest in them (the cgroup stage
// delegated them to its root).
func prepareUnprivileged(req *sdk.Request, cfg *launcher.Config) (*prepared, error) {
	prep, err := prepare(req, cfg)
	if err != nil || !cfg.Unprivileged {
		return prep, err
	}
	cfg.Cgroups = nil
	// The console is the guest root's terminal, group tty (5) inside.
	if req.Console != "" {
		if err := os.Chown(req.Console, int(prep.ids.Base), int(prep.ids.Base)+5); err != nil {
			prep.close()
			return nil, sdk.Internalf("give the console to the guest's root: %w", err)
		}
	}
	return prep, nil
}

// installInit puts subhost-init into the guest root. Into a root the
// guest's user namespace owns (RootUserns: its overlay) the host's root
// cannot write: the file would be the host's uid 0, which the idmapped
// layers below cannot store. There it writes as the guest's root would,
// with that uid and gid as its file-system ids (setfsuid, on a thread
// of its own that is discarded afterwards), so the file is stored as
// uid 0 like anything the guest makes. The root itself is opened as the
// host's root: the guest's cannot search the host's directories.
func installInit(rec *sdk.BootRecord, content []byte) (bool, error) {
	root, err := guestroot.Open(rec.Root)
	if err != nil {
		return false, sdk.NotFoundf("%w", err)
	}
	defer root.Close()
	install := func() (bool, error) {
		wrote, err := root.InstallFile("/sbin/subhost-init", content, 0o755)
		if err != nil {
			return false, sdk.Internalf("%w", err)
		}
		return wrote, nil
	}
	if rec.RootUserns == "" {
		return install()
	}
	type answer struct {
		wrote bool
		err   error
	}
	done := make(chan answer, 1)
	go func() {
		// Never unlocked: the thread, with its changed ids, ends with
		// this goroutine.
		runtime.LockOSThread()
		unix.SetfsgidRetGid(int(rec.UsernsBase))
		unix.SetfsuidRetUid(int(rec.UsernsBase))
		// setfsuid reports only the previous id: -1 changes nothing.
		if got, _ := unix.SetfsuidRetUid(-1); got != int(rec.UsernsBase) {
			done <- answer{err: sdk.Internalf("install subhost-init as the guest's root: setfsuid %d did not take", rec.UsernsBase)}
			return
		}
		wrote, err := install()
		done <- answer{wrote, err}
	}()
	a := <-done
	return a.wrote, a.err
}

// installInBackground runs installInit on its own goroutine; the function
// it returns waits for it and gives its result, as often as it is called.
func installInBackground(rec *sdk.BootRecord, content []byte) func() (bool, error) {
	done := make(chan struct{})
	var wrote bool
	var err error
	go func() {
		defer close(done)
		wrote, err = installInit(rec, content)
	}()
	return func() (bool, error) {
		<-done
		return wrote, err
	}
}
