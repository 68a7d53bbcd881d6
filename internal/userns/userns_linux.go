package userns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/idrange"
	"github.com/subhost/subhost/internal/nsfs"
)

// Create makes a user namespace whose ids 0..r.Size-1 are the host's
// r.Base.., with a network namespace it owns, and pins them on userPath
// and netPath (neither may exist). On error nothing is left pinned.
//
// The holder is cloned into both namespaces (with its maps written by
// this privileged process) and traced, so that it stops at its exec
// before running a single instruction of the program: no runtime starts
// up, it is pinned and killed. The program is this one, /proc/self/exe,
// which it never runs.
func Create(r idrange.Range, userPath, netPath string) (err error) {
	maps := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(r.Base), Size: int(r.Size)}}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{"subhost-userns-holder"},
		Env:  []string{},
		Dir:  "/",
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
			UidMappings: maps,
			GidMappings: maps,
			// The guest's root may set its groups (login, su, daemons).
			GidMappingsEnableSetgroups: true,
			Ptrace:                     true,
			Pdeathsig:                  syscall.SIGKILL,
		},
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the user namespace's holder: %w", err)
	}
	pid := cmd.Process.Pid
	defer func() {
		cmd.Process.Kill()
		cmd.Process.Release()
		// A traced child also reports its stop: wait until it is gone.
		for {
			var ws unix.WaitStatus
			_, werr := unix.Wait4(pid, &ws, 0, nil)
			if werr == unix.EINTR {
				continue
			}
			if werr != nil || ws.Exited() || ws.Signaled() {
				break
			}
		}
		if err != nil {
			nsfs.Unpin(userPath)
			nsfs.Unpin(netPath)
		}
	}()
	proc := "/proc/" + strconv.Itoa(pid) + "/ns/"
	if err := nsfs.Pin(proc+"user", userPath); err != nil {
		return err
	}
	return nsfs.Pin(proc+"net", netPath)
}

// Check confirms that the pins at userPath and netPath are a user
// namespace and a network namespace that it owns: what Create made.
// Missing pins are reported as fs.ErrNotExist.
func Check(userPath, netPath string) error {
	user, err := nsfs.Open(userPath, unix.CLONE_NEWUSER)
	if err != nil {
		return fmt.Errorf("%s: %w", userPath, err)
	}
	if user == nil {
		return fmt.Errorf("%s: %w", userPath, os.ErrNotExist)
	}
	defer user.Close()
	net, err := nsfs.Open(netPath, unix.CLONE_NEWNET)
	if err != nil {
		return fmt.Errorf("%s: %w", netPath, err)
	}
	if net == nil {
		return fmt.Errorf("%s: %w", netPath, os.ErrNotExist)
	}
	defer net.Close()
	same, err := nsfs.SameOwner(net, user)
	if err != nil {
		return err
	}
	if !same {
		return fmt.Errorf("%w: network namespace %s does not belong to user namespace %s", ErrForeign, netPath, userPath)
	}
	return nil
}

// ErrForeign is wrapped when a pinned network namespace is not the user
// namespace's (a privileged subhost's of the same name, say).
var ErrForeign = errors.New("foreign namespace")

// Command returns a command that runs the executable open as self (a
// descriptor, usually of /proc/self/exe) inside the user namespace pinned
// at user, and the network namespace pinned at net unless it is "", as
// that namespace's root (uid and gid 0 inside, every capability in it and
// none outside), with args and files as its descriptors 3, 4, ...
//
// It goes through util-linux nsenter, a single-threaded C program: a Go
// process cannot join a user namespace itself (setns(CLONE_NEWUSER)
// refuses a multithreaded caller, and the build has cgo off). The
// executable is run as /proc/self/fd/N, which needs no search permission
// on the directories it lies in: the namespace's root, a host uid range,
// may lack it.
func Command(user, net string, self *os.File, files []*os.File, args ...string) (*exec.Cmd, error) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("an unprivileged guest needs util-linux nsenter: %w", err)
	}
	all := append(append([]*os.File(nil), files...), self)
	ns := []string{"--user=" + user}
	if net != "" {
		ns = append(ns, "--net="+net)
	}
	argv := append(append([]string{"nsenter"}, ns...), "--", fmt.Sprintf("/proc/self/fd/%d", 3+len(all)-1))
	return &exec.Cmd{
		Path:        nsenter,
		Args:        append(argv, args...),
		Env:         []string{},
		Dir:         "/",
		ExtraFiles:  all,
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}, nil
}
