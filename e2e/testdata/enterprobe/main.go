// Command enterprobe runs inside a guest for the enter tests.
//
//	enterprobe tty   says what its stdin is: a terminal of the guest's own
//	                 devpts, its controlling terminal, in a session of its
//	                 own; then pushes a line into it with TIOCSTI and reads
//	                 it back (it arrives on its own terminal, not the
//	                 caller's).
//	enterprobe scan  reads every process's /proc/PID/exe in a loop and
//	                 appends to /run/exe-scan.foreign each that is not the
//	                 guest's own file at that path (a host executable);
//	                 /run/exe-scan.count holds how many it read.
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		os.Exit(2)
	}
	switch os.Args[1] {
	case "tty":
		tty()
	case "scan":
		scan()
	default:
		os.Exit(2)
	}
}

func tty() {
	link, _ := os.Readlink("/proc/self/fd/0")
	fmt.Printf("STDIN:%s\n", link)
	var in, pts unix.Stat_t
	if unix.Fstat(0, &in) == nil && unix.Stat("/dev/pts", &pts) == nil && in.Dev == pts.Dev {
		fmt.Println("OWN-DEVPTS")
	}
	if pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP); err == nil && pgrp == unix.Getpgrp() {
		fmt.Println("CTTY-FOREGROUND")
	}
	if sid, _ := unix.Getsid(0); sid == os.Getpid() {
		fmt.Println("OWN-SESSION")
	}
	// TIOCSTI takes a char *.
	for _, c := range []byte("sti-mark\n") {
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&c))); e != 0 {
			fmt.Println("TIOCSTI:", e)
			return
		}
	}
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	fmt.Printf("STI-READ:%s", line)
}

func scan() {
	self := os.Getpid()
	count := 0
	for {
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			pid, _ := strconv.Atoi(filepath.Base(d))
			if pid == self {
				continue
			}
			exe := d + "/exe"
			target, err := os.Readlink(exe)
			if err != nil {
				continue // a kernel thread, or gone
			}
			count++
			var via, at unix.Stat_t
			if unix.Stat(exe, &via) != nil {
				continue // gone since
			}
			if again, err := os.Readlink(exe); err != nil || again != target {
				continue // it executed something else meanwhile: look again next round
			}
			if unix.Stat(target, &at) == nil && at.Dev == via.Dev && at.Ino == via.Ino {
				continue // the guest's own file
			}
			f, err := os.OpenFile("/run/exe-scan.foreign", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err == nil {
				fmt.Fprintf(f, "pid %d: %s\n", pid, target)
				f.Close()
			}
		}
		// Written beside and renamed, so a reader never sees the file
		// truncated and not yet written.
		if os.WriteFile("/run/exe-scan.count.new", []byte(strconv.Itoa(count)), 0o644) == nil {
			os.Rename("/run/exe-scan.count.new", "/run/exe-scan.count")
		}
		time.Sleep(time.Millisecond)
	}
}
