package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/guestroot"
	"github.com/subhost/subhost/internal/mountfd"
	"github.com/subhost/subhost/internal/seccompguard"
)

// Main is the launched child, PID 1 of the guest's new PID namespace. It
// returns only by exiting: after executing subhost-init, or after writing
// why it could not to the error pipe.
func Main() {
	var st unix.Stat_t
	if unix.Fstat(ConfigFD, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO || unix.Fstat(ErrorFD, &st) != nil {
		fmt.Fprintln(os.Stderr, "the guest launcher is started by the init stage, not by hand")
		os.Exit(2)
	}
	unix.CloseOnExec(ConfigFD)
	unix.CloseOnExec(ErrorFD)
	errPipe := os.NewFile(ErrorFD, "error pipe")
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(errPipe, "launcher panic: %v\n%s", r, debug.Stack())
			os.Exit(1)
		}
	}()
	err := bootGuest()
	fmt.Fprint(errPipe, err.Error())
	os.Exit(1)
}

// bootGuest sets the guest up and executes its PID 1; it returns only an
// error.
func bootGuest() error {
	var cfg Config
	cfgPipe := os.NewFile(ConfigFD, "config pipe")
	dec := json.NewDecoder(cfgPipe)
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("read the launch config: %w", err)
	}
	if os.Getpid() != 1 {
		return errors.New("the launcher is not PID 1 of a new PID namespace")
	}
	if len(cfg.Argv) == 0 {
		return errors.New("the launch config has no command")
	}
	// A cgroup namespace is the calling thread's, not the process's, and
	// the exec keeps only the thread that calls it: the whole boot runs
	// on this one.
	runtime.LockOSThread()
	// Modes are set exactly below; the guest's PID 1 gets the usual 022.
	unix.Umask(0)

	// Nothing mounted from here on may propagate to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make / a slave mount: %w", err)
	}
	root, err := openRoot(cfg)
	if err != nil {
		return err
	}
	if err := mountGuest(root, cfg); err != nil {
		return err
	}
	if err := attachMounts(root, cfg.Mounts); err != nil {
		return err
	}
	if err := protectKernelFiles(root); err != nil {
		return err
	}
	if err := awaitPlaced(dec, cfgPipe); err != nil {
		return err
	}
	// After the disk nodes were made (the guest's device cgroup allows no
	// block mknod), before anything the guest controls runs.
	if err := enterCgroups(cfg.Cgroups); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fmt.Errorf("set hostname %q: %w", cfg.Hostname, err)
	}

	// pivot_root(".", ".") stacks the old root on the new one; detaching
	// it leaves only the guest (runc's way: no directory needed for the
	// old root inside the guest's tree).
	if err := unix.Fchdir(int(root.File().Fd())); err != nil {
		return fmt.Errorf("enter the guest root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into %q: %w", cfg.Root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	root.Close()

	if err := guestStdio(cfg.Console != ""); err != nil {
		return err
	}
	// Every descriptor but 0, 1 and 2 (and the error pipe, until the
	// exec) is closed by the exec: none of the host's reaches the guest.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close the host's descriptors: %w", err)
	}
	// The guest's PID 1 (subhost-init, in Go) has the console as its
	// controlling terminal until it gives it up, and until its signal
	// handlers are in place the Go runtime ends the process on SIGHUP
	// (the console hung up: its supervisor died) or SIGINT (a ^C typed
	// on it): for PID 1, the guest. Ignored here, both stay ignored across
	// the exec and through the runtime's start (it keeps an inherited
	// SIG_IGN for these two) until subhost-init takes them.
	signal.Ignore(unix.SIGHUP, unix.SIGINT)
	// The guard, last, so that it covers everything the guest does and
	// nothing the launcher still had to (the disk nodes above are block
	// mknods). DropCapabilities locks this goroutine to its thread, the
	// one whose capabilities the exec below keeps.
	if err := seccompguard.DropCapabilities(); err != nil {
		return err
	}
	opt := seccompguard.HostOptions()
	opt.AllowForcedUnmount = seccompguard.OwnRoot()
	if err := seccompguard.Install(opt); err != nil {
		return err
	}
	unix.Umask(0o022)
	err = unix.Exec(cfg.Argv[0], cfg.Argv, cfg.Env)
	return fmt.Errorf("exec %s in the guest: %w", cfg.Argv[0], err)
}

// awaitPlaced waits for the plugin's word that this process is in the
// guest's cgroups it moves it into (PlacedToken, after the config), and
// closes the pipe. Without it, nothing of the guest may run.
func awaitPlaced(dec *json.Decoder, pipe *os.File) error {
	defer pipe.Close()
	rest, err := io.ReadAll(io.MultiReader(dec.Buffered(), pipe))
	if err != nil {
		return fmt.Errorf("wait to be placed in the guest's cgroups: %w", err)
	}
	if strings.TrimLeft(string(rest), " \t\r\n") != PlacedToken {
		return errors.New("the init stage ended before it placed the guest in its cgroups")
	}
	return nil
}

// enterCgroups joins the guest's cgroups, then makes this thread a cgroup
// namespace rooted at them: the guest sees its cgroup as "/", and neither
// sees nor can reach the cgroup above it, which holds its device policy,
// nor any hierarchy's root. The order matters: a namespace made before
// the join would be rooted at the host's cgroups.
func enterCgroups(dirs []string) error {
	for _, d := range dirs {
		if err := writeProcs(d); err != nil {
			return fmt.Errorf("join cgroup: %w", err)
		}
	}
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("unshare the cgroup namespace: %w", err)
	}
	return nil
}

// writeProcs moves this process, every thread of it, into the cgroup dir.
// The kernel takes one PID per write; 0 is the writer's.
func writeProcs(dir string) error {
	path := dir + "/cgroup.procs"
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	_, err = unix.Write(fd, []byte("0"))
	unix.Close(fd)
	if err != nil {
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

// Filesystem magic numbers, to confirm each mount.
const (
	procMagic   = unix.PROC_SUPER_MAGIC
	sysfsMagic  = unix.SYSFS_MAGIC
	tmpfsMagic  = unix.TMPFS_MAGIC
	devptsMagic = unix.DEVPTS_SUPER_MAGIC
)

// mountGuest mounts the guest's /proc, /sys, /dev and /run.
func mountGuest(root *guestroot.Root, cfg Config) error {
	const nosuidNodevNoexec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	for _, m := range []struct {
		at   string
		mode uint32
		m    guestroot.Mount
	}{
		{"/proc", 0o555, guestroot.Mount{Source: "proc", FSType: "proc", Flags: nosuidNodevNoexec, Magic: procMagic}},
		// The sysfs mounted in the guest's netns shows that netns's
		// interfaces; read-only, so the guest cannot tune the host's
		// devices through it.
		{"/sys", 0o555, guestroot.Mount{Source: "sysfs", FSType: "sysfs", Flags: unix.MS_RDONLY | nosuidNodevNoexec, Magic: sysfsMagic}},
	} {
		if err := mountDir(root, m.at, m.mode, m.m); err != nil {
			return err
		}
	}
	if err := mountDev(root, cfg); err != nil {
		return err
	}
	if err := populateDev(root, cfg); err != nil {
		return err
	}
	return mountDir(root, "/run", 0o755, guestroot.Mount{Source: "tmpfs", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=755,size=10%", Magic: tmpfsMagic})
}

// mountDev mounts the guest's /dev: a fresh tmpfs, or for an
// unprivileged guest the one the plugin made with its nodes.
func mountDev(root *guestroot.Root, cfg Config) error {
	if !cfg.Unprivileged {
		return mountDir(root, "/dev", 0o755, guestroot.Mount{Source: "tmpfs", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k", Magic: tmpfsMagic})
	}
	return attachPrepared(root, "/dev", cfg.DevFD)
}

// attachPrepared attaches the detached mount at descriptor fd (from the
// plugin) on the directory at guest path at, created when missing.
func attachPrepared(root *guestroot.Root, at string, fd int) error {
	target, err := root.MountDir(at, 0o755)
	if err != nil {
		return fmt.Errorf("attach on %s: %w", at, err)
	}
	defer target.Close()
	return root.Attach(os.NewFile(uintptr(fd), at), target, at)
}

// attachMounts attaches the MOUNTS data disks.
func attachMounts(root *guestroot.Root, mounts []Mount) error {
	for _, m := range mounts {
		if err := attachPrepared(root, m.Path, m.FD); err != nil {
			return fmt.Errorf("MOUNTS: %w", err)
		}
	}
	return nil
}

// attachDir is where an unprivileged guest's launcher attaches the root
// the plugin cloned, on a tmpfs of its own: it cannot search the host
// directories the root's host path lies in (it is a host uid range), and
// pivot_root wants a mount its user namespace made (those copied from
// the host are locked). The tmpfs hides the host's /tmp only in the
// launcher's mount namespace, and goes with the host's tree at the
// pivot.
const attachDir = "/tmp"

// openRoot opens the guest root as a mount point of its own, which
// pivot_root requires: a privileged guest's is a clone of it mounted on
// itself (guestroot.CloneSelf: setuid works there, unlike on the host's
// nosuid mount); an unprivileged guest's is the idmapped clone the
// plugin made (nosuid cleared too), attached under attachDir.
func openRoot(cfg Config) (*guestroot.Root, error) {
	if !cfg.Unprivileged {
		root, err := guestroot.Open(cfg.Root)
		if err != nil {
			return nil, err
		}
		return root, root.CloneSelf()
	}
	if err := unix.Mount("launcher", attachDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=700,size=16k"); err != nil {
		return nil, fmt.Errorf("a tmpfs on %s to attach the guest root: %w", attachDir, err)
	}
	at := attachDir + "/root"
	if err := os.Mkdir(at, 0o700); err != nil {
		return nil, err
	}
	target, err := os.OpenFile(at, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	if err := mountfd.Attach(os.NewFile(uintptr(cfg.RootFD), cfg.Root), target); err != nil {
		return nil, fmt.Errorf("the guest root: %w", err)
	}
	return guestroot.Open(at)
}

// mountDir mounts m on the directory at guest path at, opened inside the
// root (created with mode when missing, refused when a symlink).
func mountDir(root *guestroot.Root, at string, mode uint32, m guestroot.Mount) error {
	target, err := root.MountDir(at, mode)
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.FSType, at, err)
	}
	defer target.Close()
	return root.MountAt(m, target, at)
}

// populateDev fills the guest's fresh tmpfs /dev.
func populateDev(root *guestroot.Root, cfg Config) error {
	dev, err := root.MountDir("/dev", 0)
	if err != nil {
		return err
	}
	defer dev.Close()
	// An unprivileged guest's /dev came from the host with its nodes
	// (prepare_linux.go): mknod is refused in a user namespace.
	if !cfg.Unprivileged {
		for _, n := range append(StandardNodes(), DiskNodes(cfg.Devices)...) {
			if err := guestroot.Mknod(dev, n); err != nil {
				return err
			}
		}
	}

	// A devpts instance of the guest's own: its ptys are not the host's.
	pts, err := guestroot.Mkdir(dev, "pts", 0o755)
	if err != nil {
		return err
	}
	err = root.MountAt(guestroot.Mount{Source: "devpts", FSType: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC,
		Data: "newinstance,ptmxmode=0666,mode=0620,gid=5", Magic: devptsMagic}, pts, "/dev/pts")
	pts.Close()
	if err != nil {
		return err
	}
	shm, err := guestroot.Mkdir(dev, "shm", 0o1777)
	if err != nil {
		return err
	}
	err = root.MountAt(guestroot.Mount{Source: "shm", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV,
		Data: "mode=1777,size=65536k", Magic: tmpfsMagic}, shm, "/dev/shm")
	shm.Close()
	if err != nil {
		return err
	}
	for _, l := range [][2]string{
		{"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"},
		{"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
	} {
		if err := guestroot.Symlink(dev, l[0], l[1]); err != nil {
			return err
		}
	}

	if cfg.Console == "" {
		return nil
	}
	// The console pty bound on /dev/console: the guest writes to the
	// runner's pty, never to the host's terminal. The source is opened
	// again here: fd 0 was opened in the host's mount namespace, and a
	// bind mount's source must be in ours.
	src, err := os.OpenFile(cfg.Console, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the console: %w", err)
	}
	defer src.Close()
	if err := sameTerminal(0, int(src.Fd())); err != nil {
		return fmt.Errorf("console %q: %w", cfg.Console, err)
	}
	console, err := guestroot.CreateFile(dev, "console", 0o600)
	if err != nil {
		return err
	}
	defer console.Close()
	return root.MountAt(guestroot.Mount{Source: fmt.Sprintf("/proc/self/fd/%d", src.Fd()), Flags: unix.MS_BIND}, console, "/dev/console")
}

// StandardNodes are the character devices every guest's /dev has.
func StandardNodes() []guestroot.Node {
	return []guestroot.Node{
		{Name: "null", Type: unix.S_IFCHR, Major: 1, Minor: 3, Perm: 0o666},
		{Name: "zero", Type: unix.S_IFCHR, Major: 1, Minor: 5, Perm: 0o666},
		{Name: "full", Type: unix.S_IFCHR, Major: 1, Minor: 7, Perm: 0o666},
		{Name: "random", Type: unix.S_IFCHR, Major: 1, Minor: 8, Perm: 0o666},
		{Name: "urandom", Type: unix.S_IFCHR, Major: 1, Minor: 9, Perm: 0o666},
		{Name: "tty", Type: unix.S_IFCHR, Major: 5, Minor: 0, Perm: 0o666},
	}
}

// DiskNodes are the boot record's disks as block device nodes.
func DiskNodes(devices []Device) []guestroot.Node {
	var out []guestroot.Node
	for _, d := range devices {
		// 0440 does not stop root; the read-only loop device does.
		perm := uint32(0o660)
		if d.ReadOnly {
			perm = 0o440
		}
		out = append(out, guestroot.Node{Name: d.GuestName, Type: unix.S_IFBLK, Major: d.Major, Minor: d.Minor, Perm: perm})
	}
	return out
}

// sameTerminal checks that fd b is the character device fd a is.
func sameTerminal(a, b int) error {
	var was, is unix.Stat_t
	if err := unix.Fstat(a, &was); err != nil {
		return err
	}
	if err := unix.Fstat(b, &is); err != nil {
		return err
	}
	if was.Rdev != is.Rdev || is.Mode&unix.S_IFMT != unix.S_IFCHR {
		return errors.New("not the terminal the runner gave")
	}
	return nil
}

// guestStdio reopens the console (or /dev/null) from inside the guest as
// fds 0, 1 and 2, so that PID 1's descriptors name guest paths, and
// checks it is the same terminal the runner gave.
func guestStdio(console bool) error {
	name := "/dev/null"
	if console {
		name = "/dev/console"
	}
	fd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s in the guest: %w", name, err)
	}
	defer unix.Close(fd)
	if console {
		if err := sameTerminal(0, fd); err != nil {
			return fmt.Errorf("/dev/console in the guest: %w", err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := unix.Dup3(fd, i, 0); err != nil {
			return fmt.Errorf("console as fd %d: %w", i, err)
		}
	}
	return nil
}
