package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/launcher"
	"github.com/subhost/subhost/sdk"
)

// launch starts the guest and returns its PID and start time once
// subhost-init has been executed, or the error that stopped it. The child
// is not waited for: it outlives the plugin and becomes the runner's
// child.
//
// started is called as soon as the launcher exists, before it is sent its
// config: the launcher goes no further than reading that config until
// started has returned, and exits when the plugin dies before sending it,
// so a guest runs only once started has recorded it. On any error,
// started's included, the launcher is killed and reaped before launch
// returns; so it is when ctx is done, even if the launch had succeeded,
// since the caller has given up on the result. place, called once the
// launcher has its config and is in the cgroups launch moves it into,
// puts it wherever else it must be before it goes on (see placedToken),
// and finishes whatever must be done before the guest's PID 1 runs; its
// error is returned as it is.
func launch(ctx context.Context, cfg launcher.Config, rec *sdk.BootRecord, console string, prep *prepared, started func(pid int, start uint64) error, place func(pid int) error) (int, uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, sdk.Internalf("launch guest: %w", err)
	}
	t0 := time.Now()
	exe, err := openLauncher()
	if err != nil {
		return 0, 0, err
	}
	defer exe.Close()
	stdio, err := openStdio(console)
	if err != nil {
		return 0, 0, err
	}
	defer stdio.Close()
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return 0, 0, sdk.Internalf("%w", err)
	}
	defer cfgW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return 0, 0, sdk.Internalf("%w", err)
	}
	defer errR.Close()
	files := append([]*os.File{cfgR, errW}, prep.files...) // launcher.ConfigFD, ErrorFD, FirstPreparedFD...

	var proc *os.Process
	if cfg.Unprivileged {
		proc, err = startInUserns(exe, stdio, files, rec, console != "")
	} else {
		proc, err = startPrivileged(exe, stdio, files, rec.Netns, console != "")
	}
	cfgR.Close()
	errW.Close()
	if err != nil {
		// An error the launcher's starter wrote says more.
		if b, _ := io.ReadAll(errR); len(b) > 0 {
			err = sdk.Internalf("launch guest: %s", b)
		}
		return 0, 0, err
	}
	pid := proc.Pid
	abort := func() {
		proc.Kill()
		proc.Wait()
	}
	// The start time names the process from fork on, across the exec.
	start, _, err := procStat(pid)
	if err != nil {
		abort()
		return 0, 0, sdk.Internalf("guest pid %d: read its start time: %w", pid, err)
	}
	if err := started(pid, start); err != nil {
		abort()
		return 0, 0, err
	}
	// Moving a process into a cgroup v1 costs a millisecond or more per
	// hierarchy (the kernel waits for an RCU grace period each time), so
	// the launcher is moved from here, while it starts, into most of its
	// cgroups; the rest it joins itself (splitCgroups says which and why).
	tStarted := time.Now()
	// The launcher sets the guest up (mounts, /dev) while it is moved
	// into its cgroups from here, which can take a kernel grace period or
	// two; it joins the rest and goes on only on launcher.PlacedToken.
	early, late := splitCgroups(cfg.Cgroups)
	cfg.Cgroups = late
	if err := json.NewEncoder(cfgW).Encode(cfg); err != nil {
		abort()
		return 0, 0, sdk.Internalf("send the launch config: %w", err)
	}
	if err := movePID(early, pid); err != nil {
		abort()
		return 0, 0, sdk.Internalf("launch guest: %w", err)
	}
	if err := place(pid); err != nil {
		abort()
		return 0, 0, err
	}
	tPlaced := time.Now()
	// A launcher that failed meanwhile is gone (EPIPE here): its error
	// pipe says why, below.
	cfgW.WriteString(launcher.PlacedToken)
	cfgW.Close()

	msg := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(errR) // EOF: exec succeeded, or the child died
		msg <- b
	}()
	var b []byte
	select {
	case b = <-msg:
	case <-ctx.Done():
		abort()
		return 0, 0, sdk.Internalf("launch guest: %w", ctx.Err())
	}
	if len(b) > 0 {
		proc.Wait()
		return 0, 0, sdk.Internalf("launch guest: %s", b)
	}
	// The pipe also reaches EOF when the launcher dies before writing
	// (killed, say). Its name tells it from a subhost-init that ran and
	// already ended, which is the supervisor's business.
	if comm, state := procComm(pid); state == 'Z' && comm != launcher.PID1Comm {
		ws := waitStatus(proc)
		return 0, 0, sdk.Internalf("launch guest: the launcher died (%s) before executing subhost-init", ws)
	}
	if err := ctx.Err(); err != nil {
		abort()
		return 0, 0, sdk.Internalf("launch guest: %w", err)
	}
	proc.Release()
	sdk.Logger(ctx).Debug("launch timings", "launcher_started", tStarted.Sub(t0), "placed", tPlaced.Sub(tStarted), "until_exec", time.Since(tPlaced))
	return pid, start, nil
}

// launcherDevices are the boot record's disks as the launcher takes them.
func launcherDevices(devs []sdk.Device) []launcher.Device {
	out := make([]launcher.Device, len(devs))
	for i, d := range devs {
		out[i] = launcher.Device{GuestName: d.GuestName, Major: d.Major, Minor: d.Minor, ReadOnly: d.ReadOnly}
	}
	return out
}

// launcherName is subhost-launch's name beside the plugin's executable.
const launcherName = "subhost-launch"

// launcherDir is where subhost-launch is: beside the plugin. Tests, whose
// executable is the test binary, point it elsewhere.
var launcherDir = func() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.Dir(exe), nil
}

// openLauncher opens subhost-launch, the guest's launcher
// (internal/launcher), which is executed through the descriptor: what
// was checked is what runs. Like the plugins, it must be owned by root
// and writable by nobody else.
func openLauncher() (*os.File, error) {
	dir, err := launcherDir()
	if err != nil {
		return nil, sdk.Internalf("find the plugin's own directory: %w", err)
	}
	path := filepath.Join(dir, launcherName)
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, sdk.Internalf("the guest launcher: %w (build it with make build; it is installed beside the plugins)", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, sdk.Internalf("the guest launcher %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o111 == 0 || st.Uid != 0 || st.Mode&0o022 != 0 {
		f.Close()
		return nil, sdk.Internalf("the guest launcher %s must be an executable file owned by root and not writable by group or others", path)
	}
	return f, nil
}

// withExecutable returns files with exe after them, and the path that
// names exe in a child that gets them as its descriptors from 3 on: the
// kernel resolves it before it closes anything, so what runs is the file
// the plugin opened. A number of this process's own would not do: before
// the exec, the child moves descriptors onto the numbers just above the
// files it is given, and one of them could be exe's. The launcher marks
// every descriptor close-on-exec before the guest's init runs.
func withExecutable(exe *os.File, files []*os.File) (path string, all []*os.File) {
	all = append(append([]*os.File(nil), files...), exe)
	return fmt.Sprintf("/proc/self/fd/%d", 3+len(files)), all
}

// startPrivileged starts the launcher of a privileged guest, on a thread
// that joined the boot record's netns (a new, empty one when it has
// none).
func startPrivileged(exe, stdio *os.File, files []*os.File, netns string, ctty bool) (*os.Process, error) {
	var flags uintptr
	if netns == "" {
		flags = syscall.CLONE_NEWNET
	}
	path, files := withExecutable(exe, files)
	cmd := launcher.Command(path, stdio, files, flags, ctty)
	if err := startIn(cmd, netns); err != nil {
		return nil, err
	}
	return cmd.Process, nil
}

// startIn starts cmd in the network namespace at netns: from a thread
// that joined it, since the forked child inherits the forking thread's
// namespaces. That thread stays locked and is discarded, never returned
// to the Go scheduler in the wrong namespace.
func startIn(cmd *exec.Cmd, netns string) error {
	if netns == "" {
		if err := cmd.Start(); err != nil {
			return sdk.Internalf("start the guest launcher: %w", err)
		}
		return nil
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		fd, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- sdk.NotFoundf("open netns: %w", err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			done <- sdk.Invalidf("join netns %q: %w", netns, err)
			return
		}
		if err := cmd.Start(); err != nil {
			done <- sdk.Internalf("start the guest launcher: %w", err)
			return
		}
		done <- nil
	}()
	return <-done
}

// openStdio opens the console the runner owns (a pty slave), or /dev/null
// when there is none.
func openStdio(console string) (*os.File, error) {
	if console == "" {
		f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return nil, sdk.Internalf("%w", err)
		}
		return f, nil
	}
	f, err := os.OpenFile(console, os.O_RDWR|unix.O_NOCTTY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, sdk.NotFoundf("open console: %w", err)
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		f.Close()
		return nil, sdk.Invalidf("console %q is not a terminal", console)
	}
	return f, nil
}

func waitStatus(proc *os.Process) string {
	ps, err := proc.Wait()
	if err != nil {
		return err.Error()
	}
	return ps.String()
}

// procComm reads a process's command name and state letter.
func procComm(pid int) (string, byte) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0
	}
	s := string(data)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || end+3 > len(s) {
		return "", 0
	}
	return s[open+1 : end], s[end+2]
}

// splitCgroups sorts the guest's cgroups into those the launcher can be
// moved into at once and those it joins itself, late: the ones that
// control devices (cgroup v1's devices controller; on cgroup v2 a device
// program may be attached), which forbid the disk nodes it makes first,
// and v1's pids controller, whose limit would also count the threads the
// launcher's runtime starts while it comes up (joined late, they count
// but never fail).
func splitCgroups(dirs []string) (early, late []string) {
	has := func(d, file string) bool {
		_, err := os.Stat(filepath.Join(d, file))
		return err == nil
	}
	for _, d := range dirs {
		var fs unix.Statfs_t
		if has(d, "devices.allow") || has(d, "pids.max") || unix.Statfs(d, &fs) != nil || fs.Type == unix.CGROUP2_SUPER_MAGIC {
			late = append(late, d)
			continue
		}
		early = append(early, d)
	}
	return early, late
}

// movePID moves process pid, every thread of it, into each of dirs.
func movePID(dirs []string, pid int) error {
	for _, d := range dirs {
		f, err := os.OpenFile(filepath.Join(d, "cgroup.procs"), os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteString(strconv.Itoa(pid))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fmt.Errorf("move the launcher into cgroup %s: %w", d, err)
		}
	}
	return nil
}
