package seccompguard

import (
	"encoding/binary"
	"fmt"
	"testing"

	"golang.org/x/net/bpf"
)

// run evaluates the program on a seccomp_data as the kernel lays it out
// on a little-endian machine. x/net/bpf's VM loads 32-bit words
// big-endian, so every word is byte-swapped first: all loads are aligned
// words.
func run(t *testing.T, vm *bpf.VM, arch uint32, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[0:], nr)
	binary.LittleEndian.PutUint32(data[4:], arch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[offArgs+8*i:], a)
	}
	for i := 0; i < len(data); i += 4 {
		data[i], data[i+1], data[i+2], data[i+3] = data[i+3], data[i+2], data[i+1], data[i]
	}
	out, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(out)
}

// rebootNr is reboot(2) in each ABI: it must stay allowed.
var rebootNr = map[string]uint32{"x86_64": 169, "i386": 88, "aarch64": 142, "arm": 88, "riscv64": 142}

const deny = retErrno | ePERM

// callCase is one system call and its arguments, with the expected
// verdict.
type callCase struct {
	name string
	call call // -1: reboot(2); -2: a call the guard ignores
	args [6]uint64
	want uint32
}

func args(i int, v uint64) (a [6]uint64) {
	a[i] = v
	return a
}

var callCases = func() []callCase {
	const (
		rdonly = 0x1
		mgc    = 0xc0ed0000 // MS_MGC_VAL, old callers' magic in the high bits
		junk   = 0xffffffff00000000
	)
	cases := []callCase{
		{"remount ro", callMount, args(3, msRemount|rdonly), deny},
		{"remount rw", callMount, args(3, msRemount), deny},
		{"remount with magic", callMount, args(3, mgc|msRemount|rdonly), deny},
		{"remount with junk high bits", callMount, args(3, junk|msRemount), deny},
		{"bind remount ro", callMount, args(3, msRemount|msBind|rdonly), retAllow},
		{"bind", callMount, args(3, msBind), retAllow},
		{"plain mount ro", callMount, args(3, rdonly), retAllow},
		{"remount flag in another argument", callMount, args(2, msRemount), retAllow},
		{"fspick", callFspick, [6]uint64{}, deny},
		{"forced umount", callUmount2, args(1, 0x1), deny},
		{"forced lazy umount", callUmount2, args(1, 0x1|0x2), deny},
		{"forced umount, junk high bits", callUmount2, args(1, junk|0x1), deny},
		{"umount", callUmount2, args(1, 0), retAllow},
		{"lazy umount", callUmount2, args(1, 0x2), retAllow},
		{"force flag in another argument", callUmount2, args(0, 0x1), retAllow},

		{"LOOP_SET_FD", callIoctl, args(1, 0x4c00), deny},
		{"LOOP_CLR_FD", callIoctl, args(1, 0x4c01), deny},
		{"LOOP_SET_STATUS", callIoctl, args(1, 0x4c02), deny},
		{"LOOP_SET_STATUS64", callIoctl, args(1, 0x4c04), deny},
		{"LOOP_GET_STATUS64", callIoctl, args(1, 0x4c05), deny},
		{"LOOP_CHANGE_FD", callIoctl, args(1, 0x4c06), deny},
		{"LOOP_CONFIGURE", callIoctl, args(1, 0x4c0a), deny},
		{"LOOP_CTL_ADD", callIoctl, args(1, 0x4c80), deny},
		{"LOOP_CTL_REMOVE", callIoctl, args(1, 0x4c81), deny},
		{"LOOP_CTL_GET_FREE", callIoctl, args(1, 0x4c82), deny},
		{"LOOP_CLR_FD with junk high bits", callIoctl, args(1, junk|0x4c01), deny},
		{"an 'L' request with direction and size", callIoctl, args(1, 0xc0084c42), deny},
		{"FIFREEZE", callIoctl, args(1, 0xc0045877), deny},
		{"FITHAW", callIoctl, args(1, 0xc0045878), deny},
		{"FIFREEZE with junk high bits", callIoctl, args(1, junk|0xc0045877), deny},
		{"FS_IOC_SHUTDOWN", callIoctl, args(1, 0x8004587d), deny},
		{"XFS_IOC_OPEN_BY_HANDLE", callIoctl, args(1, 0xc038586b), deny},
		{"XFS_IOC_OPEN_BY_HANDLE, 32-bit size", callIoctl, args(1, 0xc01c586b), deny},
		{"XFS_IOC_READLINK_BY_HANDLE", callIoctl, args(1, 0xc038586c), deny},
		{"XFS_IOC_ATTRLIST_BY_HANDLE", callIoctl, args(1, 0x4040587a), deny},
		{"XFS_IOC_ATTRMULTI_BY_HANDLE", callIoctl, args(1, 0x4048587b), deny},
		{"LOOP_CLR_FD in the fd argument", callIoctl, args(0, 0x4c01), retAllow},
		{"TCGETS", callIoctl, args(1, 0x5401), retAllow},
		{"TIOCSCTTY", callIoctl, args(1, 0x540e), retAllow},
		{"BLKGETSIZE64", callIoctl, args(1, 0x80081272), retAllow},
		{"FITRIM", callIoctl, args(1, 0xc0185879), retAllow},
		{"FICLONE", callIoctl, args(1, 0x40049409), retAllow},
		{"0x4c as the number, not the type", callIoctl, args(1, 0x544c), retAllow},
		{"XFS_IOC_FSGEOMETRY", callIoctl, args(1, 0x8100587e), retAllow},
		{"XFS_IOC_FD_TO_HANDLE", callIoctl, args(1, 0xc038586a), retAllow},

		{"mknodat block", callMknodat, args(2, sIFBLK|0o600), deny},
		{"mknodat block, junk high bits", callMknodat, args(2, 0xffff0000|sIFBLK|0o600), deny},
		{"mknodat char", callMknodat, args(2, 0o020000|0o666), retAllow},
		{"mknodat fifo", callMknodat, args(2, 0o010000|0o644), retAllow},
		{"mknodat socket", callMknodat, args(2, 0o140000|0o644), retAllow},
		{"mknodat regular", callMknodat, args(2, 0o644), retAllow},
		{"mknodat block mode in the path argument", callMknodat, args(1, sIFBLK), retAllow},
		{"mknod block", callMknod, args(1, sIFBLK|0o600), deny},
		{"mknod char", callMknod, args(1, 0o020000|0o666), retAllow},
		{"mknod block mode in the dev argument", callMknod, args(2, sIFBLK), retAllow},

		{"reboot", -1, args(2, 0x4321fedc), retAllow},
		{"another call", -2, args(3, msRemount), retAllow},
	}
	for _, c := range []call{callOpenByHandleAt, callKexecLoad, callKexecFileLoad, callInitModule,
		callFinitModule, callDeleteModule, callSwapon, callSwapoff, callBPF, callPerfEventOpen, callKeyctl,
		callAddKey, callRequestKey, callFanotifyInit, callUserfaultfd} {
		cases = append(cases, callCase{c.String(), c, [6]uint64{}, deny})
	}
	return cases
}()

func TestProgram(t *testing.T) {
	for goarch, list := range abis {
		prog, err := Program(goarch, Options{})
		if err != nil {
			t.Fatalf("%s: %v", goarch, err)
		}
		vm, err := bpf.NewVM(prog)
		if err != nil {
			t.Fatalf("%s: %v", goarch, err)
		}
		for _, x := range list {
			for _, tt := range callCases {
				var nrs []uint32
				switch tt.call {
				case -1:
					nrs = []uint32{rebootNr[x.name]}
				case -2:
					nrs = []uint32{1}
				default:
					nrs = x.nr[tt.call]
				}
				for _, nr := range nrs {
					if got := run(t, vm, x.auditArch, nr, tt.args); got != tt.want {
						t.Errorf("%s/%s: %s (nr %d): got %#x, want %#x", goarch, x.name, tt.name, nr, got, tt.want)
					}
					if x.foldX32 {
						if got := run(t, vm, x.auditArch, nr|x32SyscallBit, tt.args); got != tt.want {
							t.Errorf("%s/x32: %s (nr %d): got %#x, want %#x", goarch, tt.name, nr, got, tt.want)
						}
					}
				}
			}
		}
		// An ABI the program does not know: allowed, whatever the call.
		if got := run(t, vm, 0x12345678, 165, args(3, msRemount)); got != retAllow {
			t.Errorf("%s: unknown ABI: got %#x, want allow", goarch, got)
		}
	}
}

// TestNumbersComplete checks that each ABI names every call it has: a
// missing number would let the call through unnoticed.
func TestNumbersComplete(t *testing.T) {
	lacks := map[string][]call{
		"i386":    {callKexecFileLoad},
		"aarch64": {callMknod},
		"riscv64": {callMknod},
	}
	for _, list := range abis {
		for _, x := range list {
			seen := map[uint32]call{}
			for c := call(0); c < numCalls; c++ {
				want := 1
				for _, l := range lacks[x.name] {
					if l == c {
						want = 0
					}
				}
				if n := len(x.nr[c]); n < want {
					t.Errorf("%s: no number for %s", x.name, c)
				}
				for _, nr := range x.nr[c] {
					if other, dup := seen[nr]; dup {
						t.Errorf("%s: %s and %s both numbered %d", x.name, c, other, nr)
					}
					seen[nr] = c
				}
			}
		}
	}
	// Every call has a rule.
	for c := call(0); c < numCalls; c++ {
		found := false
		for _, r := range rules {
			found = found || r.call == c
		}
		if !found {
			t.Errorf("no rule for %s", c)
		}
	}
}

// TestProgramOptions checks that each of Options lets its call through
// on every ABI, and changes nothing else.
func TestProgramOptions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opt   Options
		cases []callCase
	}{
		{"userfaultfd allowed", Options{AllowUserfaultfd: true}, []callCase{
			{"userfaultfd", callUserfaultfd, [6]uint64{}, retAllow},
			{"bpf", callBPF, [6]uint64{}, deny},
			{"keyctl", callKeyctl, [6]uint64{}, deny},
		}},
		{"forced unmounts allowed", Options{AllowForcedUnmount: true}, []callCase{
			{"forced umount", callUmount2, args(1, 0x1), retAllow},
			{"remount", callMount, args(3, msRemount), deny},
			{"fspick", callFspick, [6]uint64{}, deny},
			{"userfaultfd", callUserfaultfd, [6]uint64{}, deny},
		}},
	} {
		for goarch, list := range abis {
			prog, err := Program(goarch, tc.opt)
			if err != nil {
				t.Fatalf("%s: %v", goarch, err)
			}
			vm, err := bpf.NewVM(prog)
			if err != nil {
				t.Fatalf("%s: %v", goarch, err)
			}
			for _, x := range list {
				for _, c := range tc.cases {
					for _, nr := range x.nr[c.call] {
						if got := run(t, vm, x.auditArch, nr, c.args); got != c.want {
							t.Errorf("%s/%s: %s (nr %d) with %s: got %#x, want %#x", goarch, x.name, c.name, nr, tc.name, got, c.want)
						}
					}
				}
			}
		}
	}
}

func TestProgramUnsupported(t *testing.T) {
	if _, err := Program("sparc64", Options{}); err == nil {
		t.Fatal("Program(sparc64) succeeded")
	}
}

func ExampleProgram() {
	prog, _ := Program("arm64", Options{})
	fmt.Println(len(prog) > 0)
	// Output: true
}
