package seccompguard

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestNativeNumbersAmd64(t *testing.T) {
	checkNumber(t, x86_64, callMknod, unix.SYS_MKNOD)
	checkNumber(t, x86_64, callKexecFileLoad, unix.SYS_KEXEC_FILE_LOAD)
}
