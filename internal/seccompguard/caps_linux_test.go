package seccompguard

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk/stagetest"
)

// capsChild drops the capabilities and executes the test binary again to
// report what it has after execve, as the guest's PID 1 would.
func capsChild() error {
	if err := DropCapabilities(); err != nil {
		return err
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, childEnv+"=") {
			env = append(env, e)
		}
	}
	env = append(env, childEnv+"=caps-report")
	return syscall.Exec("/proc/self/exe", []string{os.Args[0], "-test.run=^$"}, env)
}

// capsReport prints the capability sets and what a few calls that only
// the dropped capabilities allow return (all harmless: their arguments
// are invalid, so that even with the capability they fail).
func capsReport() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.HasPrefix(k, "Cap") {
			fmt.Println(k, strings.TrimSpace(v))
		}
	}
	// Garbage: ENOEXEC with CAP_SYS_MODULE, EPERM without.
	fmt.Println("init_module", res(unix.InitModule([]byte("garbage"), "")))
	// A tick out of range: EINVAL with CAP_SYS_TIME, EPERM without.
	tx := unix.Timex{Modes: unix.ADJ_TICK, Tick: 1}
	_, err = unix.Adjtimex(&tx)
	fmt.Println("adjtimex", res(err))
	// A real handle of this test binary: open_by_handle_at opens it with
	// CAP_DAC_READ_SEARCH, and fails with EPERM without.
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, exe, 0)
	if err != nil {
		fmt.Println("open_by_handle_at", "no handle:", res(err))
		return nil
	}
	root, err := os.Open("/")
	if err != nil {
		return err
	}
	fd, err := unix.OpenByHandleAt(int(root.Fd()), h, unix.O_RDONLY)
	if err == nil {
		unix.Close(fd)
	}
	fmt.Println("open_by_handle_at", res(err))
	return nil
}

func TestDropCapabilities(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	out := child(t, "caps")
	sets := map[string]uint64{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && strings.HasPrefix(k, "Cap") {
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			sets[k] = n
		}
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		v, ok := sets[k]
		if !ok {
			t.Fatalf("no %s in the child's status:\n%s", k, out)
		}
		if v&DroppedMask() != 0 {
			t.Errorf("%s %016x still has %016x", k, v, v&DroppedMask())
		}
	}
	// What a guest keeps: root's other capabilities, after execve too.
	for _, c := range []int{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_SYS_BOOT, unix.CAP_MKNOD,
		unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_DAC_OVERRIDE, unix.CAP_CHOWN, unix.CAP_SETPCAP, unix.CAP_KILL} {
		for _, k := range []string{"CapPrm", "CapEff", "CapBnd"} {
			if sets[k]&(1<<c) == 0 {
				t.Errorf("%s %016x lacks capability %d", k, sets[k], c)
			}
		}
	}
	checkReport(t, out, map[string]string{"adjtimex": "EPERM", "open_by_handle_at": "EPERM"})
	// A kernel built without modules says ENOSYS whatever the
	// capabilities.
	if !strings.Contains(out, "\ninit_module EPERM\n") && !strings.Contains(out, "\ninit_module ENOSYS\n") {
		t.Errorf("init_module: want EPERM (or ENOSYS without module support); the child said:\n%s", out)
	}
}

func TestDroppedList(t *testing.T) {
	seen := map[int]bool{}
	for _, c := range Dropped {
		if seen[c.Cap] || c.Name == "" || c.Why == "" || c.Cap < 0 || c.Cap > 63 {
			t.Errorf("bad or repeated entry %+v", c)
		}
		seen[c.Cap] = true
	}
	for _, keep := range []int{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_SYS_BOOT, unix.CAP_MKNOD, unix.CAP_SETPCAP} {
		if seen[keep] {
			t.Errorf("capability %d is needed by the guest but dropped", keep)
		}
	}
}
