package cgroups

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// The cgroup v2 device policy is a BPF_PROG_TYPE_CGROUP_DEVICE program
// built here from the same allow-list as the v1 rules, with
// github.com/cilium/ebpf's assembler and loader. Not the device filter of
// github.com/opencontainers/cgroups (devices/devicefilter and
// devices/ebpf): that module is not among this project's dependencies,
// its loader detaches every other program it finds on the cgroup, and it
// pulls in logrus, dbus and go-systemd for a program of a few dozen
// instructions whose logic the v1 rules already pin down.

// devRule is one parsed allow-list entry: "c 1:3 rwm", "c 136:* rwm".
type devRule struct {
	typ          int32 // BPF_DEVCG_DEV_BLOCK or _CHAR
	major, minor int64 // -1 for "*"
	access       int32 // BPF_DEVCG_ACC_* bits
}

func parseRule(r string) (devRule, error) {
	f := strings.Fields(r)
	if len(f) != 3 {
		return devRule{}, fmt.Errorf("device rule %q: want TYPE MAJOR:MINOR ACCESS", r)
	}
	var d devRule
	switch f[0] {
	case "b":
		d.typ = unix.BPF_DEVCG_DEV_BLOCK
	case "c":
		d.typ = unix.BPF_DEVCG_DEV_CHAR
	default:
		return d, fmt.Errorf("device rule %q: type %q", r, f[0])
	}
	maj, min, ok := strings.Cut(f[1], ":")
	num := func(s string) (int64, error) {
		if s == "*" {
			return -1, nil
		}
		return strconv.ParseInt(s, 10, 32)
	}
	var err1, err2 error
	d.major, err1 = num(maj)
	d.minor, err2 = num(min)
	if !ok || err1 != nil || err2 != nil {
		return d, fmt.Errorf("device rule %q: bad major:minor", r)
	}
	for _, c := range f[2] {
		switch c {
		case 'r':
			d.access |= unix.BPF_DEVCG_ACC_READ
		case 'w':
			d.access |= unix.BPF_DEVCG_ACC_WRITE
		case 'm':
			d.access |= unix.BPF_DEVCG_ACC_MKNOD
		default:
			return d, fmt.Errorf("device rule %q: access %q", r, f[2])
		}
	}
	return d, nil
}

// deviceProgram compiles rules into a cgroup device program: it returns
// 1 (allow) when the access matches a rule and asks for nothing the rule
// does not grant, else 0 (EPERM).
//
// The context is struct bpf_cgroup_dev_ctx { u32 access_type (access
// << 16 | type); u32 major; u32 minor; }.
func deviceProgram(rules []string) (asm.Instructions, error) {
	insts := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word),
		asm.Mov.Reg32(asm.R3, asm.R2),
		asm.And.Imm32(asm.R3, 0xffff), // type
		asm.Mov.Reg32(asm.R4, asm.R2),
		asm.RSh.Imm32(asm.R4, 16), // access
		asm.LoadMem(asm.R5, asm.R1, 4, asm.Word),
		asm.LoadMem(asm.R6, asm.R1, 8, asm.Word),
	}
	// Rule i's first instruction is labelled "ruleI"; a mismatch jumps
	// to the next label, the last one the final deny.
	for i, r := range rules {
		d, err := parseRule(r)
		if err != nil {
			return nil, err
		}
		next := fmt.Sprintf("rule%d", i+1)
		block := asm.Instructions{asm.JNE.Imm(asm.R3, d.typ, next)}
		if d.major >= 0 {
			block = append(block, asm.JNE.Imm(asm.R5, int32(d.major), next))
		}
		if d.minor >= 0 {
			block = append(block, asm.JNE.Imm(asm.R6, int32(d.minor), next))
		}
		block = append(block,
			asm.Mov.Reg32(asm.R7, asm.R4),
			asm.And.Imm32(asm.R7, ^d.access&7), // asked for, not granted
			asm.JNE.Imm(asm.R7, 0, next),
			asm.Mov.Imm(asm.R0, 1),
			asm.Return(),
		)
		block[0] = block[0].WithSymbol(fmt.Sprintf("rule%d", i))
		insts = append(insts, block...)
	}
	insts = append(insts, asm.Mov.Imm(asm.R0, 0).WithSymbol(fmt.Sprintf("rule%d", len(rules))), asm.Return())
	return insts, nil
}

// programLoad is a device program being loaded in the background: the
// verifier's and the JIT's work (about 0.3 ms, more for a process's
// first program) needs no cgroup, so Setup starts it before it makes
// the cgroups and attaches the program once the cgroup2 directory
// exists.
type programLoad struct {
	done chan struct{}
	prog *ebpf.Program
	err  error
}

// loadDeviceProgram starts loading the device program for rules.
func loadDeviceProgram(rules []string) *programLoad {
	l := &programLoad{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		insts, err := deviceProgram(rules)
		if err != nil {
			l.err = err
			return
		}
		l.prog, l.err = ebpf.NewProgram(&ebpf.ProgramSpec{
			Name:         "subhost_dev",
			Type:         ebpf.CGroupDevice,
			License:      "Apache-2.0",
			Instructions: insts,
		})
	}()
	return l
}

// wait returns the loaded program, once it is.
func (l *programLoad) wait() (*ebpf.Program, error) {
	<-l.done
	return l.prog, l.err
}

// close unloads the program (an attached one stays with its cgroup).
func (l *programLoad) close() {
	if prog, _ := l.wait(); prog != nil {
		prog.Close()
	}
}

// ensureDeviceProgram attaches the device program of load to the cgroup2
// directory dir, in place of any attached there already: an adopted
// cgroup's (a leftover of an earlier boot, whose allow-list names the
// disks it had). It is attached with BPF_F_ALLOW_MULTI: a program the
// guest might attach below can only deny more, never allow more, since
// every program on the path must allow an access. The attachment is of
// the cgroup (BPF_PROG_ATTACH, not a link): it lasts until the cgroup is
// removed, not until this process exits.
func ensureDeviceProgram(dir string, load *programLoad) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	earlier, err := link.QueryPrograms(link.QueryOptions{Target: fd, Attach: ebpf.AttachCGroupDevice})
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	prog, err := load.wait()
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	err = link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  fd,
		Program: prog,
		Attach:  ebpf.AttachCGroupDevice,
		Flags:   unix.BPF_F_ALLOW_MULTI,
	})
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	// Only now, so that the cgroup is never without a policy. (Nothing
	// but subhost attaches here: the guest's cgroup namespace begins
	// below, and its delegated files do not reach this directory.)
	for _, ap := range earlier.Programs {
		old, err := ebpf.NewProgramFromID(ap.ID)
		if errors.Is(err, os.ErrNotExist) {
			continue // gone meanwhile
		}
		if err != nil {
			return fmt.Errorf("replace the program of an earlier boot: %w", err)
		}
		err = link.RawDetachProgram(link.RawDetachProgramOptions{Target: fd, Program: old, Attach: ebpf.AttachCGroupDevice})
		old.Close()
		if err != nil {
			return fmt.Errorf("replace the program of an earlier boot: %w", err)
		}
	}
	return nil
}

func attachedDevicePrograms(fd int) (int, error) {
	res, err := link.QueryPrograms(link.QueryOptions{Target: fd, Attach: ebpf.AttachCGroupDevice})
	if err != nil {
		return 0, err
	}
	return len(res.Programs), nil
}

// DeviceProgramAttached reports whether a device program is attached to
// the cgroup2 directory dir.
func DeviceProgramAttached(dir string) (bool, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	n, err := attachedDevicePrograms(fd)
	if err != nil {
		return false, errors.Join(errors.New("query cgroup device programs"), err)
	}
	return n > 0, nil
}
