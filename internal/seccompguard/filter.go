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

	retAllow = 0x7fff0000 // SECCOMP_RET_ALLOW
	retErrno = 0x00050000 // SECCOMP_RET_ERRNO
	ePERM    = 1

	// struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6].
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// abi is one system call ABI a process of this architecture can use.
type abi struct {
	name         string
	auditArch    uint32
	mount        uint32
	fspick       uint32
	foldX32      bool // x86_64: x32 calls are the same numbers with bit 30 set
	littleEndian bool
}

var abis = map[string][]abi{
	"amd64":   {{"x86_64", auditArchX86_64, 165, 433, true, true}, {"i386", auditArchI386, 21, 433, false, true}},
	"386":     {{"i386", auditArchI386, 21, 433, false, true}},
	"arm64":   {{"aarch64", auditArchAarch64, 40, 433, false, true}, {"arm", auditArchARM, 21, 433, false, true}},
	"arm":     {{"arm", auditArchARM, 21, 433, false, true}},
	"riscv64": {{"riscv64", auditArchRISCV64, 40, 433, false, true}},
}

// Program returns the guard's BPF program for a GOARCH.
func Program(goarch string) ([]bpf.Instruction, error) {
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
		a.jeq(x.mount, x.name+".mount", "")
		a.jeq(x.fspick, "deny", "allow")
		a.label(x.name + ".mount")
		// The flags are args[3]; MS_REMOUNT and MS_BIND are in its low
		// 32 bits, the only ones the kernel reads.
		lo := uint32(offArgs + 8*3)
		if !x.littleEndian {
			lo += 4
		}
		a.ins(bpf.LoadAbsolute{Off: lo, Size: 4})
		a.jset(msRemount, "", "allow")
		a.jset(msBind, "allow", "deny")
	}
	a.label("allow")
	a.ins(bpf.RetConstant{Val: retAllow})
	a.label("deny")
	a.ins(bpf.RetConstant{Val: retErrno | ePERM})
	return a.assemble()
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
}

func (a *asm) ins(i bpf.Instruction) { a.code = append(a.code, item{ins: i}) }

func (a *asm) jeq(val uint32, jt, jf string) {
	a.code = append(a.code, item{isJump: true, cond: bpf.JumpEqual, val: val, jt: jt, jf: jf})
}

func (a *asm) jset(val uint32, jt, jf string) {
	a.code = append(a.code, item{isJump: true, cond: bpf.JumpBitsSet, val: val, jt: jt, jf: jf})
}

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.code)
}

func (a *asm) assemble() ([]bpf.Instruction, error) {
	out := make([]bpf.Instruction, len(a.code))
	skip := func(from int, to string) (uint8, error) {
		if to == "" {
			return 0, nil
		}
		at, ok := a.labels[to]
		if !ok {
			return 0, fmt.Errorf("seccomp guard: label %q undefined", to)
		}
		d := at - from - 1
		if d < 0 || d > 255 {
			return 0, fmt.Errorf("seccomp guard: jump to %q out of range", to)
		}
		return uint8(d), nil
	}
	for i, it := range a.code {
		if !it.isJump {
			out[i] = it.ins
			continue
		}
		jt, err := skip(i, it.jt)
		if err != nil {
			return nil, err
		}
		jf, err := skip(i, it.jf)
		if err != nil {
			return nil, err
		}
		out[i] = bpf.JumpIf{Cond: it.cond, Val: it.val, SkipTrue: jt, SkipFalse: jf}
	}
	return out, nil
}
