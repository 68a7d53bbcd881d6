package main

// How an unprivileged guest's PID 1 gets into its user namespace.
//
// The userns stage pinned the guest's user namespace and the network
// namespace it owns; the guest's mount, PID, UTS, IPC and cgroup
// namespaces must be that user namespace's too, or its root could not
// mount its /proc, set its hostname or configure its eth0. They are made
// by cloning from a process that is already inside the user namespace.
// Getting one there needs setns(CLONE_NEWUSER), which the kernel refuses
// to a multithreaded process: every Go process is one (the runtime's
// threads start before main), and the build has cgo off, so there is no
// C constructor to run first, as runc's nsexec does. The choices were:
//
//   - a process kept inside for the guest's whole life that spawns on
//     request (podman's pause process): the guest's PID 1 would be its
//     child, not the runner's, and after a hibernation a new runner could
//     not supervise it;
//   - a small C helper: util-linux nsenter is one, single-threaded, and
//     already needed by `subhost enter`.
//
// So the plugin runs `nsenter --user=U --net=N -- /proc/self/fd/E
// __launch-in-userns K C` (internal/userns.Command), where E is a
// descriptor of the plugin's own executable. nsenter joins
// both namespaces and becomes the namespace's uid and gid 0, with every
// capability in it and none outside. That copy of the plugin (userStarter)
// clones the launcher with CLONE_PARENT, so that the launcher is the
// plugin's child as a privileged one is, writes its PID on a pipe and
// exits; the launcher then goes on exactly as a privileged one, but
// attaches the root and /dev the plugin prepared (prepare_linux.go)
// instead of mounting them.

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/userns"
	"github.com/subhost/subhost/sdk"
)

// userStarterArg, as the plugin's first argument, makes it the starter
// that clones an unprivileged guest's launcher (see above).
const userStarterArg = "__launch-in-userns"

// startInUserns starts the launcher inside the user and network
// namespaces of rec, through nsenter and the starter. files are the
// launcher's descriptors from 3 on.
func startInUserns(stdio *os.File, files []*os.File, rec *sdk.BootRecord, ctty bool) (*os.Process, error) {
	if rec.Netns == "" {
		return nil, sdk.Invalidf("the boot record has a user namespace but no network namespace")
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, sdk.Internalf("open the plugin's executable: %w", err)
	}
	defer self.Close()
	pidR, pidW, err := os.Pipe()
	if err != nil {
		return nil, sdk.Internalf("%w", err)
	}
	defer pidR.Close()
	cmd, err := userns.Command(rec.Userns, rec.Netns, self, append(append([]*os.File(nil), files...), pidW),
		userStarterArg, strconv.Itoa(len(files)), strconv.FormatBool(ctty))
	if err != nil {
		pidW.Close()
		return nil, sdk.Internalf("%w", err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio, stdio, stdio
	err = cmd.Start()
	pidW.Close()
	if err != nil {
		return nil, sdk.Internalf("start nsenter: %w", err)
	}
	line, _ := bufio.NewReader(pidR).ReadString('\n')
	werr := cmd.Wait()
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if perr != nil || pid <= 0 {
		return nil, sdk.Internalf("start the guest's launcher in its user namespace: nsenter: %v", werr)
	}
	// With CLONE_PARENT the launcher is this process's child.
	proc, err := os.FindProcess(pid)
	if err != nil {
		return nil, sdk.Internalf("the launcher (pid %d): %w", pid, err)
	}
	return proc, nil
}

// userStarterMain runs inside the guest's user and network namespaces
// (nsenter's exec): it clones the launcher with the first K descriptors
// from 3, reports its PID on the next one, and exits. Errors go to the
// launcher's error pipe, which the plugin reads.
func userStarterMain() {
	fail := func(err error) {
		fmt.Fprintf(os.NewFile(errorFD, "error pipe"), "in the user namespace: %v", err)
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
	cmd := launcherCmd(os.Stdin, files, syscall.CLONE_PARENT, ctty)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fail(fmt.Errorf("start the launcher: %w", err))
	}
	fmt.Fprintf(os.NewFile(uintptr(pidFD), "pid pipe"), "%d\n", cmd.Process.Pid)
	os.Exit(0)
}
