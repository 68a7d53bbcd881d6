package seccompguard

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Linux ABI constants, spelled here so that Program does not depend on
// the build's architecture (and can be tested for every one).
const (
	auditArchX86_64  = 0xc000003e
	auditArchI386    = 0x40000003
	auditArchAarch64 = 0xc00000b7
	auditArchARM     = 0x40000028
	auditArchRISCV64 = 0xc00000f3

	x32SyscallBit = 0x40000000

	msRemount = 0x20
	msBind    = 0x1000
	mntForce  = 0x1 // umount2's MNT_FORCE

	sIFMT  = 0o170000
	sIFBLK = 0o060000

	// An ioctl request is dir:2 size:14 type:8 nr:8 (asm-generic/ioctl.h;
	// the same layout on every architecture here).
	ioctlTypeMask    = 0xff00
	ioctlTypeNrMask  = 0xffff
	ioctlTypeLoop    = 'L' << 8 // linux/loop.h: LOOP_* and LOOP_CTL_*
	ioctlFIFREEZE    = 'X'<<8 | 119
	ioctlFITHAW      = 'X'<<8 | 120
	ioctlFSShutdown  = 'X'<<8 | 125 // FS_IOC_SHUTDOWN: ext4, xfs (GOINGDOWN), f2fs
	ioctlXFSOpenByH  = 'X'<<8 | 107 // XFS_IOC_OPEN_BY_HANDLE
	ioctlXFSLinkByH  = 'X'<<8 | 108 // XFS_IOC_READLINK_BY_HANDLE
	ioctlXFSAttrLByH = 'X'<<8 | 122 // XFS_IOC_ATTRLIST_BY_HANDLE
	ioctlXFSAttrMByH = 'X'<<8 | 123 // XFS_IOC_ATTRMULTI_BY_HANDLE

	retAllow = 0x7fff0000 // SECCOMP_RET_ALLOW
	retErrno = 0x00050000 // SECCOMP_RET_ERRNO
	ePERM    = 1

	// struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6].
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// call is a system call the guard looks at.
type call int

const (
	callMount call = iota
	callFspick
	callIoctl
	callMknod
	callMknodat
	callOpenByHandleAt
	callKexecLoad
	callKexecFileLoad
	callInitModule
	callFinitModule
	callDeleteModule
	callSwapon
	callSwapoff
	callBPF
	callPerfEventOpen
	callKeyctl
	callAddKey
	callRequestKey
	callFanotifyInit
	callUserfaultfd
	callUmount2
	numCalls
)

var callNames = [numCalls]string{
	callMount: "mount", callFspick: "fspick", callIoctl: "ioctl", callMknod: "mknod", callMknodat: "mknodat",
	callOpenByHandleAt: "open_by_handle_at", callKexecLoad: "kexec_load", callKexecFileLoad: "kexec_file_load",
	callInitModule: "init_module", callFinitModule: "finit_module", callDeleteModule: "delete_module",
	callSwapon: "swapon", callSwapoff: "swapoff",
	callBPF: "bpf", callPerfEventOpen: "perf_event_open", callKeyctl: "keyctl", callAddKey: "add_key",
	callRequestKey: "request_key", callFanotifyInit: "fanotify_init", callUserfaultfd: "userfaultfd",
	callUmount2: "umount2",
}

func (c call) String() string { return callNames[c] }

// check is what the guard does with a call.
type check int

const (
	// denyCall fails every use of the call with EPERM.
	denyCall check = iota
	// denySuperblockRemount fails mount(2) with MS_REMOUNT but without
	// MS_BIND (flags in args[3]).
	denySuperblockRemount
	// denyIoctls fails the ioctl requests listed in Program (request in
	// args[1]).
	denyIoctls
	// denyBlockNode fails a mknod whose mode (in args[argMode]) makes a
	// block device.
	denyBlockNode
	// denyUnlessOptedIn fails every use of the call with EPERM unless
	// Options allow it (see optedIn).
	denyUnlessOptedIn
	// denyForcedUnmount fails umount2 with MNT_FORCE (flags in args[1]).
	denyForcedUnmount
)

// rules is the guard, one entry per call, each with its reason. A guest
// is real root with CAP_SYS_ADMIN in the host's user namespace (and on a
// cgroup v2 host without a device cgroup): these are host-wide operations
// that its capabilities alone would allow.
var rules = []struct {
	call    call
	check   check
	argMode int // denyBlockNode: which argument is the mode
}{
	// A superblock remount: a guest on an rbind of a host directory
	// would reconfigure the host's filesystem (Debian's shutdown runs
	// `mount -o remount,ro /`). A bind remount changes only that one
	// mount's flags and stays allowed.
	{call: callMount, check: denySuperblockRemount},
	// The new mount API's way to reopen an existing superblock for
	// reconfiguration: the same hole as a superblock remount.
	{call: callFspick, check: denyCall},
	// A forced unmount: the kernel first tells the filesystem to abort
	// what is under way (umount_begin), on the superblock, for every
	// user of it. A host NFS, FUSE or Ceph mount under an rbind root
	// would fail for the host too (Debian's shutdown runs umount -f).
	// A plain or lazy unmount changes only the guest's own mounts.
	{call: callUmount2, check: denyForcedUnmount},
	// Loop devices ('L' requests: LOOP_CLR_FD, LOOP_SET_STATUS64,
	// LOOP_CHANGE_FD, LOOP_CONFIGURE... and LOOP_CTL_* on a
	// /dev/loop-control the guest made): a guest could detach its
	// read-only disk while keeping the node, and read or write whatever
	// the host attaches there next (another subhost's image), or rebind
	// the device to another file.
	// FIFREEZE/FITHAW and FS_IOC_SHUTDOWN: a guest on an rbind of a host
	// directory would freeze or shut down the host's filesystem.
	// XFS's by-handle requests: open_by_handle_at under another name
	// (needing only CAP_SYS_ADMIN), on a host XFS filesystem the guest
	// has a descriptor on.
	{call: callIoctl, check: denyIoctls},
	// Block device nodes: with CAP_MKNOD and no device cgroup (cgroup v2
	// hosts; elsewhere the device cgroup refuses them too), a guest
	// could make a node for the host's disks and write them raw. The
	// launcher makes the guest's own disk nodes before the guard is
	// installed. Character devices stay allowed (the guest's init makes
	// null, tty... nodes).
	{call: callMknod, check: denyBlockNode, argMode: 1},
	{call: callMknodat, check: denyBlockNode, argMode: 2},
	// The "shocker" escape: open any file of a filesystem the guest has
	// a descriptor on (an rbind root: the host's) by a forged handle,
	// outside the guest's tree.
	{call: callOpenByHandleAt, check: denyCall},
	// Replacing the host's kernel. (A guest's reboot(2) stays allowed:
	// in a child PID namespace it only ends the guest, and its kexec
	// command is refused there.)
	{call: callKexecLoad, check: denyCall},
	{call: callKexecFileLoad, check: denyCall},
	// Kernel modules are the host's kernel.
	{call: callInitModule, check: denyCall},
	{call: callFinitModule, check: denyCall},
	{call: callDeleteModule, check: denyCall},
	// Swap is host-wide: a guest's file or disk would receive other
	// processes' memory, and swapoff could take the host's swap away.
	{call: callSwapon, check: denyCall},
	{call: callSwapoff, check: denyCall},
	// eBPF programs and maps are the host kernel's, not the guest's:
	// with CAP_SYS_ADMIN (CAP_BPF is dropped, but SYS_ADMIN implies it)
	// a guest could load tracing programs that read any process's
	// memory and the kernel's (bpf_probe_read_kernel), attach to the
	// host's cgroups or its network devices, and pin objects in a
	// bpffs that outlive it.
	{call: callBPF, check: denyCall},
	// perf events see the whole machine: kernel addresses and samples of
	// every process's registers and stacks (the kernel's own hardening,
	// perf_event_paranoid, does not apply to root), kprobes and
	// tracepoints in the host kernel, and a long record of local
	// privilege escalation bugs.
	{call: callPerfEventOpen, check: denyCall},
	// The kernel keyrings are not namespaced: the guest's root would
	// share the host root's user keyring (and its session and persistent
	// keyrings), read or replace the keys that the host's NFS, CIFS,
	// dm-crypt, fscrypt or ecryptfs use, and fill the host's key quota.
	{call: callKeyctl, check: denyCall},
	{call: callAddKey, check: denyCall},
	{call: callRequestKey, check: denyCall},
	// fanotify with CAP_SYS_ADMIN watches a whole mount or filesystem
	// (FAN_MARK_FILESYSTEM): on an rbind root that is the host's
	// filesystem, every host process's opens and writes, with
	// descriptors to the files; permission events could even stall the
	// host's processes. inotify (per inode, no descriptors) stays.
	{call: callFanotifyInit, check: denyCall},
	// userfaultfd stops a kernel thread at a page fault for as long as
	// its caller wants: the standard way to widen a kernel race into a
	// reliable exploit. A host that limits it to privileged users
	// (vm.unprivileged_userfaultfd=0, the default) means to keep it from
	// untrusted code, and the guest's root is privileged only by
	// accident of being root; a host that allows it to everyone gets
	// it in guests too (Options.AllowUserfaultfd).
	{call: callUserfaultfd, check: denyUnlessOptedIn},
}

// Options adjust the guard to the host's own policy.
type Options struct {
	// AllowUserfaultfd lets userfaultfd(2) through, for a host whose
	// vm.unprivileged_userfaultfd is 1 (HostOptions reads it).
	AllowUserfaultfd bool
	// AllowForcedUnmount lets umount2 with MNT_FORCE through, for a guest
	// whose root is a file system of its own (a loop device's, an
	// overlay), not a bind of a host directory: no host mount is then
	// below it, and Debian's shutdown (umount -f) unmounts what it made.
	AllowForcedUnmount bool
}

// optedIn reports whether opt lets a denyUnlessOptedIn call through.
func (opt Options) optedIn(c call) bool {
	return c == callUserfaultfd && opt.AllowUserfaultfd
}

// skips reports whether opt leaves rule r out of the program.
func (opt Options) skips(c call, k check) bool {
	return k == denyUnlessOptedIn && opt.optedIn(c) || k == denyForcedUnmount && opt.AllowForcedUnmount
}

// deniedIoctls are the requests denyIoctls matches by type and number
// (the low 16 bits), whatever their direction and size: a 32-bit
// caller's struct sizes differ. Loop requests are matched by type only.
var deniedIoctls = []uint32{
	ioctlFIFREEZE, ioctlFITHAW, ioctlFSShutdown,
	ioctlXFSOpenByH, ioctlXFSLinkByH, ioctlXFSAttrLByH, ioctlXFSAttrMByH,
}

// abi is one system call ABI a process of this architecture can use.
type abi struct {
	name         string
	auditArch    uint32
	foldX32      bool // x86_64: x32 calls are the same numbers with bit 30 set
	littleEndian bool
	// nr lists each call's numbers in this ABI: none when the ABI lacks
	// the call, two for x86_64 calls that x32 numbers differently.
	nr [numCalls][]uint32
}

// The numbers are the kernel's syscall tables' (x86 syscall_64.tbl and
// syscall_32.tbl, arm's syscall.tbl, asm-generic unistd.h for aarch64
// and riscv64); the tests check the native ones against x/sys/unix.
var abis = map[string][]abi{
	"amd64":   {x86_64, i386},
	"386":     {i386},
	"arm64":   {aarch64, arm},
	"arm":     {arm},
	"riscv64": {riscv64},
}

var (
	x86_64 = abi{name: "x86_64", auditArch: auditArchX86_64, foldX32: true, littleEndian: true, nr: [numCalls][]uint32{
		callMount: {165}, callFspick: {433},
		callIoctl: {16, 514}, // 514: x32's ioctl
		callMknod: {133}, callMknodat: {259}, callOpenByHandleAt: {304},
		callKexecLoad:     {246, 528}, // 528: x32's kexec_load
		callKexecFileLoad: {320}, callInitModule: {175}, callFinitModule: {313}, callDeleteModule: {176},
		callSwapon: {167}, callSwapoff: {168},
		callBPF: {321}, callPerfEventOpen: {298}, callKeyctl: {250}, callAddKey: {248}, callRequestKey: {249},
		callFanotifyInit: {300}, callUserfaultfd: {323}, callUmount2: {166},
	}}
	i386 = abi{name: "i386", auditArch: auditArchI386, littleEndian: true, nr: [numCalls][]uint32{
		callMount: {21}, callFspick: {433}, callIoctl: {54}, callMknod: {14}, callMknodat: {297},
		callOpenByHandleAt: {342}, callKexecLoad: {283}, // no kexec_file_load
		callInitModule: {128}, callFinitModule: {350}, callDeleteModule: {129},
		callSwapon: {87}, callSwapoff: {115},
		callBPF: {357}, callPerfEventOpen: {336}, callKeyctl: {288}, callAddKey: {286}, callRequestKey: {287},
		callFanotifyInit: {338}, callUserfaultfd: {374}, callUmount2: {52},
	}}
	aarch64 = abi{name: "aarch64", auditArch: auditArchAarch64, littleEndian: true, nr: genericNumbers}
	riscv64 = abi{name: "riscv64", auditArch: auditArchRISCV64, littleEndian: true, nr: genericNumbers}
	arm     = abi{name: "arm", auditArch: auditArchARM, littleEndian: true, nr: [numCalls][]uint32{
		callMount: {21}, callFspick: {433}, callIoctl: {54}, callMknod: {14}, callMknodat: {324},
		callOpenByHandleAt: {371}, callKexecLoad: {347}, callKexecFileLoad: {401},
		callInitModule: {128}, callFinitModule: {379}, callDeleteModule: {129},
		callSwapon: {87}, callSwapoff: {115},
		callBPF: {386}, callPerfEventOpen: {364}, callKeyctl: {311}, callAddKey: {309}, callRequestKey: {310},
		callFanotifyInit: {367}, callUserfaultfd: {388}, callUmount2: {52},
	}}
	// asm-generic/unistd.h, which has no mknod.
	genericNumbers = [numCalls][]uint32{
		callMount: {40}, callFspick: {433}, callIoctl: {29}, callMknodat: {33},
		callOpenByHandleAt: {265}, callKexecLoad: {104}, callKexecFileLoad: {294},
		callInitModule: {105}, callFinitModule: {273}, callDeleteModule: {106},
		callSwapon: {224}, callSwapoff: {225},
		callBPF: {280}, callPerfEventOpen: {241}, callKeyctl: {219}, callAddKey: {217}, callRequestKey: {218},
		callFanotifyInit: {262}, callUserfaultfd: {282}, callUmount2: {39},
	}
)

// Program returns the guard's BPF program for a GOARCH.
func Program(goarch string, opt Options) ([]bpf.Instruction, error) {
	list, ok := abis[goarch]
	if !ok {
		return nil, fmt.Errorf("seccomp guard: architecture %q is not supported", goarch)
	}
	var a asm
	a.ins(bpf.LoadAbsolute{Off: offArch, Size: 4})
	for _, x := range list {
		a.jeq(x.auditArch, x.name, "")
	}
	a.ins(bpf.RetConstant{Val: retAllow}) // an ABI we do not know of
	for _, x := range list {
		a.label(x.name)
		a.ins(bpf.LoadAbsolute{Off: offNr, Size: 4})
		if x.foldX32 {
			a.ins(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: ^uint32(x32SyscallBit)})
		}
		for _, r := range rules {
			if opt.skips(r.call, r.check) {
				continue
			}
			to := "deny"
			if r.check != denyCall && r.check != denyUnlessOptedIn {
				to = x.name + "." + r.call.String()
			}
			for _, nr := range x.nr[r.call] {
				a.jeq(nr, to, "")
			}
		}
		a.ja("allow")
		for _, r := range rules {
			if r.check == denyCall || r.check == denyUnlessOptedIn || len(x.nr[r.call]) == 0 || opt.skips(r.call, r.check) {
				continue
			}
			a.label(x.name + "." + r.call.String())
			switch r.check {
			case denySuperblockRemount:
				// MS_REMOUNT and MS_BIND are in the flags' low 32
				// bits, the only ones the kernel reads.
				a.ins(x.loadArgLow(3))
				a.jset(msRemount, "", "allow")
				a.jset(msBind, "allow", "deny")
			case denyIoctls:
				// The request is an unsigned int to the kernel: only
				// the low 32 bits count, whatever the high ones say.
				a.ins(x.loadArgLow(1))
				a.ins(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: ioctlTypeMask})
				a.jeq(ioctlTypeLoop, "deny", "")
				a.ins(x.loadArgLow(1))
				a.ins(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: ioctlTypeNrMask})
				for _, req := range deniedIoctls {
					a.jeq(req, "deny", "")
				}
				a.ja("allow")
			case denyForcedUnmount:
				a.ins(x.loadArgLow(1))
				a.jset(mntForce, "deny", "allow")
			case denyBlockNode:
				// The mode is a umode_t (16 bits) to the kernel; the
				// file type is its bits 12-15.
				a.ins(x.loadArgLow(r.argMode))
				a.ins(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: sIFMT})
				a.jeq(sIFBLK, "deny", "allow")
			default:
				return nil, fmt.Errorf("seccomp guard: %s: unknown check %d", r.call, r.check)
			}
		}
	}
	a.label("allow")
	a.ins(bpf.RetConstant{Val: retAllow})
	a.label("deny")
	a.ins(bpf.RetConstant{Val: retErrno | ePERM})
	return a.assemble()
}

// loadArgLow loads the low 32 bits of args[i].
func (x abi) loadArgLow(i int) bpf.Instruction {
	off := uint32(offArgs + 8*i)
	if !x.littleEndian {
		off += 4
	}
	return bpf.LoadAbsolute{Off: off, Size: 4}
}

// asm is a tiny assembler with forward labels; "" as a jump target means
// the next instruction.
type asm struct {
	code   []item
	labels map[string]int
}

type item struct {
	ins    bpf.Instruction
	cond   bpf.JumpTest
	val    uint32
	jt, jf string
	isJump bool
	always bool // an unconditional jump to jt
}

func (a *asm) ins(i bpf.Instruction) { a.code = append(a.code, item{ins: i}) }

func (a *asm) jeq(val uint32, jt, jf string) {
	a.code = append(a.code, item{isJump: true, cond: bpf.JumpEqual, val: val, jt: jt, jf: jf})
}

func (a *asm) jset(val uint32, jt, jf string) {
	a.code = append(a.code, item{isJump: true, cond: bpf.JumpBitsSet, val: val, jt: jt, jf: jf})
}

func (a *asm) ja(to string) {
	a.code = append(a.code, item{isJump: true, always: true, jt: to})
}

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	if _, dup := a.labels[name]; dup {
		panic("seccomp guard: label " + name + " defined twice")
	}
	a.labels[name] = len(a.code)
}

func (a *asm) assemble() ([]bpf.Instruction, error) {
	out := make([]bpf.Instruction, len(a.code))
	skip := func(from int, to string, max int) (int, error) {
		if to == "" {
			return 0, nil
		}
		at, ok := a.labels[to]
		if !ok {
			return 0, fmt.Errorf("seccomp guard: label %q undefined", to)
		}
		d := at - from - 1
		if d < 0 || d > max {
			return 0, fmt.Errorf("seccomp guard: jump to %q out of range", to)
		}
		return d, nil
	}
	for i, it := range a.code {
		if !it.isJump {
			out[i] = it.ins
			continue
		}
		if it.always {
			d, err := skip(i, it.jt, 4096) // BPF_MAXINSNS
			if err != nil {
				return nil, err
			}
			out[i] = bpf.Jump{Skip: uint32(d)}
			continue
		}
		jt, err := skip(i, it.jt, 255)
		if err != nil {
			return nil, err
		}
		jf, err := skip(i, it.jf, 255)
		if err != nil {
			return nil, err
		}
		out[i] = bpf.JumpIf{Cond: it.cond, Val: it.val, SkipTrue: uint8(jt), SkipFalse: uint8(jf)}
	}
	return out, nil
}
