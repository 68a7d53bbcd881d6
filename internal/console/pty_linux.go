package console

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// openPTY opens a new pty pair on the host's devpts. The master is
// non-blocking so that it lives in Go's poller (Close interrupts a Read);
// the slave is opened without becoming anyone's controlling terminal.
func openPTY() (master, slave *os.File, slavePath string, err error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, "", fmt.Errorf("open /dev/ptmx: %w", err)
	}
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(mfd)
		return nil, nil, "", fmt.Errorf("pty number: %w", err)
	}
	slavePath = "/dev/pts/" + strconv.Itoa(n)
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(mfd)
		return nil, nil, "", fmt.Errorf("unlock %s: %w", slavePath, err)
	}
	master = os.NewFile(uintptr(mfd), "/dev/ptmx")
	slave, err = openSlave(master, slavePath)
	if err != nil {
		master.Close()
		return nil, nil, "", err
	}
	if err := noFlowControl(slave); err != nil {
		master.Close()
		slave.Close()
		return nil, nil, "", fmt.Errorf("%s: %w", slavePath, err)
	}
	return master, slave, slavePath, nil
}

// noFlowControl turns off the console's XON/XOFF flow control. A viewer's
// ^S (its own terminal is raw, so the byte reaches the guest's pty) would
// otherwise stop the console's output, and with it everything in the
// guest that writes to the console, until a ^Q: a viewer must not be able
// to stall the guest. The guest's root may turn it on again for itself.
func noFlowControl(slave *os.File) error {
	t, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IXON | unix.IXOFF
	return unix.IoctlSetTermios(int(slave.Fd()), unix.TCSETS, t)
}

// openSlave opens the slave of master: through the master itself
// (TIOCGPTPEER, immune to path games) when the kernel has it, else by path.
func openSlave(master *os.File, slavePath string) (*os.File, error) {
	sfd, ioErr := -1, error(nil)
	// TIOCGPTPEER takes the slave's open flags as its argument.
	err := control(master, func(fd int) {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.TIOCGPTPEER),
			uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
		if e != 0 {
			ioErr = e
			return
		}
		sfd = int(r)
	})
	if err == nil && ioErr == nil {
		return os.NewFile(uintptr(sfd), slavePath), nil
	}
	fd, err := unix.Open(slavePath, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", slavePath, err)
	}
	return os.NewFile(uintptr(fd), slavePath), nil
}
