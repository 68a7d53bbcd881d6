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
// descriptor of subhost-launch. nsenter joins both namespaces and becomes
// the namespace's uid and gid 0, with every capability in it and none
// outside. subhost-launch, as the starter (launcher.StarterMain), clones
// the launcher with CLONE_PARENT, so that the launcher is the plugin's
// child as a privileged one is, writes its PID on a pipe and exits; the
// launcher then goes on exactly as a privileged one, but attaches the
// root and /dev the plugin prepared (prepare_linux.go) instead of
// mounting them.

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"github.com/subhost/subhost/internal/launcher"
	"github.com/subhost/subhost/internal/userns"
	"github.com/subhost/subhost/sdk"
)

// startInUserns starts the launcher (the executable open as exe) inside
// the user and network namespaces of rec, through nsenter and the
// starter. files are the launcher's descriptors from 3 on.
func startInUserns(exe, stdio *os.File, files []*os.File, rec *sdk.BootRecord, ctty bool) (*os.Process, error) {
	if rec.Netns == "" {
		return nil, sdk.Invalidf("the boot record has a user namespace but no network namespace")
	}
	pidR, pidW, err := os.Pipe()
	if err != nil {
		return nil, sdk.Internalf("%w", err)
	}
	defer pidR.Close()
	cmd, err := userns.Command(rec.Userns, rec.Netns, exe, append(append([]*os.File(nil), files...), pidW),
		launcher.StarterArg, strconv.Itoa(len(files)), strconv.FormatBool(ctty))
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
