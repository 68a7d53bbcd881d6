package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/mountinfo"
)

// cpuMeter counts the CPU time that subhost's own processes spend on a
// boot or a stop: the command is started straight into a cgroup2
// directory of the benchmark's (clone3's CLONE_INTO_CGROUP), and the
// directory's cpu.stat, which cgroup2 keeps with no controller enabled,
// is read before and after. Everything the command starts stays in it
// (front, supervisor, plugins, launcher) but the guest, which the init
// stage moves into the cgroups the cgroup stage made. On a machine with
// two CPUs, where a boot keeps both busy, this is the figure a change
// that saves work moves, and it hardly varies with the machine's load,
// unlike the wall time: it shows a saving of a few tenths of a
// millisecond that one run of wall times cannot.
type cpuMeter struct {
	dir string
	fd  int
}

// newCPUMeter makes the directory name at the cgroup2 tree's root, or
// returns nil, with the reason, where there is no cgroup2 mount.
func newCPUMeter(name string) (*cpuMeter, error) {
	mounts, err := mountinfo.Self()
	if err != nil {
		return nil, err
	}
	root := ""
	for _, m := range mounts {
		if m.FSType == "cgroup2" {
			root = m.Mountpoint
			break
		}
	}
	if root == "" {
		return nil, errors.New("no cgroup2 mount: CPU time per boot not measured")
	}
	dir := filepath.Join(root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return nil, err
	}
	return &cpuMeter{dir: dir, fd: fd}, nil
}

// start starts cmd inside the meter's cgroup.
func (m *cpuMeter) start(cmd *exec.Cmd) error {
	if m != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: m.fd}
	}
	return cmd.Start()
}

// usage is the CPU time everything in the cgroup has used so far (0
// without a meter).
func (m *cpuMeter) usage() time.Duration {
	if m == nil {
		return 0
	}
	f, err := os.Open(filepath.Join(m.dir, "cpu.stat"))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "usage_usec "); ok {
			us, _ := strconv.ParseInt(v, 10, 64)
			return time.Duration(us) * time.Microsecond
		}
	}
	return 0
}

// close removes the cgroup once its last process (a supervisor on its
// way out) has left it.
func (m *cpuMeter) close() error {
	if m == nil {
		return nil
	}
	unix.Close(m.fd)
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = unix.Rmdir(m.dir); err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
	}
	return fmt.Errorf("remove %s: %w", m.dir, err)
}
