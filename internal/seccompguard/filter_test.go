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
func run(t *testing.T, vm *bpf.VM, arch uint32, nr int32, flags uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[0:], uint32(nr))
	binary.LittleEndian.PutUint32(data[4:], arch)
	binary.LittleEndian.PutUint64(data[offArgs+8*3:], flags)
	for i := 0; i < len(data); i += 4 {
		data[i], data[i+1], data[i+2], data[i+3] = data[i+3], data[i+2], data[i+1], data[i]
	}
	out, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(out)
}

func TestProgram(t *testing.T) {
	const (
		rdonly = 0x1
		mgc    = 0xc0ed0000 // MS_MGC_VAL, old callers' magic in the high bits
		deny   = retErrno | ePERM
	)
	tests := []struct {
		name  string
		nr    int32
		flags uint64
		want  uint32
	}{
		{"remount ro", -1, msRemount | rdonly, deny},
		{"remount rw", -1, msRemount, deny},
		{"remount with magic", -1, mgc | msRemount | rdonly, deny},
		{"remount with junk high bits", -1, 0xffffffff00000000 | msRemount, deny},
		{"bind remount ro", -1, msRemount | msBind | rdonly, retAllow},
		{"bind", -1, msBind, retAllow},
		{"plain mount ro", -1, rdonly, retAllow},
		{"fspick", -2, 0, deny},
		{"other call", 1, msRemount, retAllow},
	}
	for goarch, list := range abis {
		prog, err := Program(goarch)
		if err != nil {
			t.Fatalf("%s: %v", goarch, err)
		}
		vm, err := bpf.NewVM(prog)
		if err != nil {
			t.Fatalf("%s: %v", goarch, err)
		}
		for _, x := range list {
			for _, tt := range tests {
				nr := tt.nr
				switch nr {
				case -1:
					nr = int32(x.mount)
				case -2:
					nr = int32(x.fspick)
				}
				if got := run(t, vm, x.auditArch, nr, tt.flags); got != tt.want {
					t.Errorf("%s/%s: %s: got %#x, want %#x", goarch, x.name, tt.name, got, tt.want)
				}
				if x.foldX32 {
					if got := run(t, vm, x.auditArch, nr|x32SyscallBit, tt.flags); got != tt.want {
						t.Errorf("%s/x32: %s: got %#x, want %#x", goarch, tt.name, got, tt.want)
					}
				}
			}
		}
		// An ABI the program does not know: allowed, whatever the call.
		if got := run(t, vm, 0x12345678, 165, msRemount); got != retAllow {
			t.Errorf("%s: unknown ABI: got %#x, want allow", goarch, got)
		}
	}
}

func TestProgramUnsupported(t *testing.T) {
	if _, err := Program("sparc64"); err == nil {
		t.Fatal("Program(sparc64) succeeded")
	}
}

func ExampleProgram() {
	prog, _ := Program("arm64")
	fmt.Println(len(prog) > 0)
	// Output: true
}
