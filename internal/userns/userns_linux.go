package userns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/idrange"
	"github.com/subhost/subhost/internal/nsfs"
)

// holderArg0 is the holder's argv[0]: a binary started under it only
// waits for its stdin to close.
const holderArg0 = "subhost-userns-holder"

func init() {
	if len(os.Args) == 1 && os.Args[0] == holderArg0 {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
}

// Create makes a user namespace whose ids 0..r.Size-1 are the host's
// r.Base.., with a network namespace it owns, and pins them on userPath
// and netPath (neither may exist). On error nothing is left pinned.
func Create(r idrange.Range, userPath, netPath string) (err error) {
	maps := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(r.Base), Size: int(r.Size)}}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{holderArg0},
		Env:  []string{},
		Dir:  "/",
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
			UidMappings: maps,
			GidMappings: maps,
			// The guest's root may set its groups (login, su, daemons).
			GidMappingsEnableSetgroups: true,
			Pdeathsig:                  syscall.SIGKILL,
		},
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		stdin.Close()
		return fmt.Errorf("start the user namespace's holder: %w", err)
	}
	defer func() {
		stdin.Close()
		if werr := cmd.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("the user namespace's holder: %w", werr)
		}
		if err != nil {
			nsfs.Unpin(userPath)
			nsfs.Unpin(netPath)
		}
	}()
	proc := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/"
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
