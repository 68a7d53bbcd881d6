package launcher

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Command is the command that makes the launcher from the executable at
// path (subhost-launch): in new mount, PID, UTS and IPC namespaces (and
// those of flags), in its own session and process group (the runner
// kills each plugin's group after use, and must spare the guest), with
// no parent-death signal (it must outlive the plugin), stdio (the
// console, or /dev/null) as fds 0, 1 and 2 and, with ctty, its
// controlling terminal, and files from fd 3 on.
func Command(path string, stdio *os.File, files []*os.File, flags uintptr, ctty bool) *exec.Cmd {
	return &exec.Cmd{
		Path: path,
		Args: []string{"subhost-launch", LaunchArg},
		// Its own, never the guest's (which comes in the Config): the
		// init plugin's GOMAXPROCS, which the runner sets to 1 for
		// every plugin (pluginhost's fixedEnv). The launcher, too,
		// does one thing at a time.
		Env:        []string{"GOMAXPROCS=" + strconv.Itoa(runtime.GOMAXPROCS(0))},
		Dir:        "/",
		Stdin:      stdio,
		Stdout:     stdio,
		Stderr:     stdio,
		ExtraFiles: files,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: flags | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
			Setsid:     true,
			Setctty:    ctty,
			Ctty:       0, // the child's fd 0
		},
	}
}

// StarterMain runs inside an unprivileged guest's user and network
// namespaces, executed there by util-linux nsenter (a Go process cannot
// join a user namespace itself: the init plugin explains): it clones the
// launcher with CLONE_PARENT, so that the launcher is the plugin's child
// as a privileged one is, with the first K descriptors from 3, reports
// its PID on the next one, and exits. Errors go to the launcher's error
// pipe, which the plugin reads. Its arguments: StarterArg K CTTY.
func StarterMain() {
	fail := func(err error) {
		fmt.Fprintf(os.NewFile(ErrorFD, "error pipe"), "in the user namespace: %v", err)
		os.Exit(1)
	}
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "the starter is run by the init stage, not by hand")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[2])
	ctty := os.Args[3] == "true"
	if err != nil || n < 2 {
		fail(fmt.Errorf("bad descriptor count %q", os.Args[2]))
	}
	pidFD := 3 + n
	// What this process got from nsenter beyond the launcher's
	// descriptors must not reach the launcher.
	if err := unix.CloseRange(uint(pidFD), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		fail(err)
	}
	files := make([]*os.File, n)
	for i := range files {
		files[i] = os.NewFile(uintptr(3+i), "launcher fd")
	}
	cmd := Command("/proc/self/exe", os.Stdin, files, syscall.CLONE_PARENT, ctty)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fail(fmt.Errorf("start the launcher: %w", err))
	}
	fmt.Fprintf(os.NewFile(uintptr(pidFD), "pid pipe"), "%d\n", cmd.Process.Pid)
	os.Exit(0)
}
