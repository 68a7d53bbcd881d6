package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/guestexec"
)

// enterAsDroppedHostUser is a host process that joined the network
// namespace of the guest whose PID 1 is pid as root, then dropped to uid,
// as `ip netns exec NAME tcpdump` does, asking the guest's PID 1 to run
// argv: it returns PID 1's first answer. Only the thread that does it
// changes its uid; it ends with the goroutine.
func enterAsDroppedHostUser(t *testing.T, pid, uid int, argv ...string) string {
	t.Helper()
	type answer struct {
		text string
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		text, err := func() (string, error) {
			ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
			if err != nil {
				return "", err
			}
			defer ns.Close()
			null, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
			if err != nil {
				return "", err
			}
			defer null.Close()
			if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
				return "", err
			}
			// Raw calls: the Go runtime's setresuid changes every thread.
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
				return "", e
			}
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
				return "", e
			}
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return "", err
			}
			defer unix.Close(fd)
			if err := unix.Connect(fd, &unix.SockaddrUnix{Name: guestexec.SocketName}); err != nil {
				return "", err
			}
			req, _ := json.Marshal(map[string]any{"request": guestexec.Request{Argv: argv, Env: []string{"PATH=/bin:/sbin"}}})
			n := int(null.Fd())
			sendErr := unix.Sendmsg(fd, req, unix.UnixRights(n, n, n), nil, unix.MSG_NOSIGNAL)
			buf := make([]byte, 4096)
			for range 2 { // a refusal with the request unread comes after a reset
				got, _, _, _, err := unix.Recvmsg(fd, buf, nil, 0)
				if errors.Is(err, unix.ECONNRESET) {
					continue
				}
				if err != nil && sendErr != nil {
					err = fmt.Errorf("%v (send: %v)", err, sendErr)
				}
				return string(buf[:max(got, 0)]), err
			}
			return "", unix.ECONNRESET
		}()
		done <- answer{text, err}
	}()
	a := <-done
	if a.err != nil {
		t.Fatalf("a dropped host user asking the guest's init: %v", a.err)
	}
	return a.text
}
