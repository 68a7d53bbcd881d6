// Command testinit stands in for subhost-init in the init stage's tests:
// run as the guest's PID 1, it writes what it sees to /report.json, then
// behaves as /testinit.conf says: "exit" (default), "wait" (until SIGPWR,
// then touch /got-sigpwr and exit 0) or "ignore" (ignore SIGPWR, run on).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/testguest/initprobe"
)

type (
	node   = initprobe.Node
	report = initprobe.Report
)

func errStr(err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(syscall.Errno); ok {
		return unix.ErrnoName(e)
	}
	if pe, ok := err.(*os.PathError); ok {
		if e, ok := pe.Err.(syscall.Errno); ok {
			return unix.ErrnoName(e)
		}
	}
	return err.Error()
}

func main() {
	// Signals first: until PID 1 of a PID namespace handles a signal,
	// the kernel drops it when it comes from the host.
	mode, _ := os.ReadFile("/testinit.conf")
	pwr := make(chan os.Signal, 1)
	switch strings.TrimSpace(string(mode)) {
	case "wait":
		signal.Notify(pwr, unix.SIGPWR)
	case "ignore":
		signal.Ignore(unix.SIGPWR)
	}
	r := report{PID: os.Getpid(), PPID: os.Getppid(), Args: os.Args, Env: os.Environ(), FDs: map[string]string{}, Dev: map[string]node{}}
	r.SID, _ = unix.Getsid(0)
	// Descriptors first, before this program opens anything of its own
	// (reading the directory needs one: it shows as /proc/1/fd).
	if entries, err := os.ReadDir("/proc/1/fd"); err == nil {
		for _, e := range entries {
			// The directory's own descriptor is closed by now: skip
			// what is gone.
			if l, err := os.Readlink("/proc/1/fd/" + e.Name()); err == nil {
				r.FDs[e.Name()] = l
			}
		}
	}
	r.Umask = unix.Umask(0o022)
	r.Hostname, _ = os.Hostname()
	r.Cwd, _ = os.Getwd()
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	r.Mountinfo = string(mi)
	filepath.WalkDir("/dev", func(p string, d os.DirEntry, err error) error {
		if err != nil || p == "/dev" {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		n := node{Perm: st.Mode & 0o7777, Major: unix.Major(st.Rdev), Minor: unix.Minor(st.Rdev)}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			n.Type = "c"
		case unix.S_IFBLK:
			n.Type = "b"
		case unix.S_IFDIR:
			n.Type = "d"
		case unix.S_IFLNK:
			n.Type = "l"
			n.Link, _ = os.Readlink(p)
		case unix.S_IFREG:
			n.Type = "f"
		}
		r.Dev[strings.TrimPrefix(p, "/dev/")] = n
		if p == "/dev/pts" {
			return filepath.SkipDir
		}
		return nil
	})
	if entries, err := os.ReadDir("/sys/class/net"); err == nil {
		for _, e := range entries {
			r.Ifaces = append(r.Ifaces, e.Name())
		}
	}
	if pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP); err == nil {
		r.Ctty = "pgrp " + strconv.Itoa(pgrp)
	} else {
		r.Ctty = errStr(err)
	}

	// The seccomp guard: a superblock remount fails, a bind remount works.
	r.RemountRO = errStr(unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""))
	out, err := exec.Command("/bin/busybox", "mount", "-o", "remount,ro", "/").CombinedOutput()
	r.BusyboxRO = fmt.Sprintf("%v: %s", err, strings.TrimSpace(string(out)))
	fd, err := unix.Fspick(unix.AT_FDCWD, "/", 0)
	if err == nil {
		unix.Close(fd)
	}
	r.Fspick = errStr(err)
	os.MkdirAll("/bindro", 0o755)
	if err := unix.Mount("/bindro", "/bindro", "", unix.MS_BIND, ""); err != nil {
		r.BindRO = "bind: " + errStr(err)
	} else {
		r.BindRO = errStr(unix.Mount("", "/bindro", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""))
		r.BindWrite = errStr(os.WriteFile("/bindro/x", nil, 0o644))
	}
	r.RootWrite = errStr(os.WriteFile("/rootwrite", nil, 0o644))

	fmt.Println("testinit: hello from pid", r.PID)
	b, _ := json.MarshalIndent(r, "", " ")
	os.WriteFile("/report.json.tmp", b, 0o644)
	os.Rename("/report.json.tmp", "/report.json")

	switch strings.TrimSpace(string(mode)) {
	case "wait":
		<-pwr
		os.WriteFile("/got-sigpwr", nil, 0o644)
		os.Exit(0)
	case "ignore":
		for {
			time.Sleep(time.Hour)
		}
	}
	os.Exit(0)
}
