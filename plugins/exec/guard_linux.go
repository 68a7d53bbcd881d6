package main

import (
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk"
)

// A script runs in a process group of its own, so that a timeout kills
// its children too. But the runner kills this plugin with the plugin's
// process group, not the script's: a plugin killed mid-call (the runner
// interrupted or killed) would leave the script's children running. So
// each script's group is led by a guard, this executable re-run with
// guardArg: a child of the plugin that does nothing but wait, and kills
// its whole group when the plugin dies (its parent-death signal). The
// group's ID is the guard's PID, which cannot be reused while the plugin
// has not reaped the guard: signalling the group is always safe.

// guardArg, as the plugin's first argument, makes it a guard (guardMain);
// the second is the plugin's PID.
const guardArg = "__script-group-guard"

// parentDeathSignal is what the guard gets when the plugin dies. The
// guard checks that its parent really is gone: the script may signal its
// own group.
const parentDeathSignal = unix.SIGUSR1

// guardMain is the guard's whole life: it tells the plugin it is ready
// (one byte on descriptor 3), then waits, ignoring the signals sent to
// the group (the plugin's SIGTERM at a timeout is the script's business,
// and its SIGKILL ends the guard too), until its parent is gone: then it
// kills its group, itself included. It never returns.
func guardMain() {
	plugin, _ := strconv.Atoi(os.Args[2])
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, parentDeathSignal, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	orphaned := func() bool { return os.Getppid() != plugin }
	if orphaned() {
		unix.Kill(0, unix.SIGKILL)
	}
	ready := os.NewFile(3, "ready")
	ready.Write([]byte{1})
	ready.Close()
	for range sigs {
		if orphaned() {
			unix.Kill(0, unix.SIGKILL)
		}
	}
	select {}
}

// guard is a running guard, the leader of a script's process group.
type guard struct{ cmd *exec.Cmd }

// startGuard starts a guard and waits until it is ready to guard.
func startGuard() (*guard, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, sdk.Internalf("start the guard of a script's process group: %w", err)
	}
	defer r.Close()
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"subhost-exec-guard", guardArg, strconv.Itoa(os.Getpid())},
		Env:        []string{},
		Dir:        "/",
		ExtraFiles: []*os.File{w},
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:   true,
			Pdeathsig: syscall.Signal(parentDeathSignal),
		},
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, sdk.Internalf("start the guard of a script's process group: %w", err)
	}
	g := &guard{cmd: cmd}
	if n, _ := r.Read(make([]byte, 1)); n != 1 {
		g.stop()
		return nil, sdk.Internalf("the guard of a script's process group died at its start")
	}
	return g, nil
}

// pgid is the process group to run the script in.
func (g *guard) pgid() int { return g.cmd.Process.Pid }

// kill signals the whole group, the guard included.
func (g *guard) kill(sig unix.Signal) {
	unix.Kill(-g.pgid(), sig) // ESRCH: the group is gone already
}

// stop ends the guard alone (what the script left in the background is
// left alone) and reaps it.
func (g *guard) stop() {
	g.cmd.Process.Kill()
	g.cmd.Wait()
}
