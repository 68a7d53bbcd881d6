package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/console"
	"github.com/subhost/subhost/internal/pageshed"
	"github.com/subhost/subhost/internal/proc"
)

// Main is subhost-monitor: it adopts the console, waits for the guest, a
// stop or a power-off request, and hands back to the full supervisor. It
// returns only when it cannot (with the exit status).
func Main(args []string) int {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("subhost-monitor: ")
	fd, _ := ParseFD(args)
	if fd < 0 {
		log.Printf("usage: subhost-monitor NAME %s=N (started by the supervisor only)", FDFlag)
		return 2
	}
	// Signals first: a stop that arrives from here on is seen; one that
	// arrived during the exec left its request file behind (below).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	h, err := Read(fd)
	if err != nil {
		// Nothing to hand back to: the guest runs on unsupervised, and
		// `subhost stop` takes it down (the supervisor is gone).
		log.Print(err)
		return 1
	}
	h.Reason, h.Console = watch(h, sigs)
	err = Exec(h.Supervisor, h, h.Console.Master, h.Console.Listener)
	log.Printf("subhost %s: %v; the guest (pid %d) runs on unsupervised: `subhost stop %s` takes it down", h.Name, err, h.GuestPID, h.Name)
	return 1
}

// watch serves the console until there is something for the supervisor
// to do, and returns why and the console to hand back.
func watch(h Handover, sigs <-chan os.Signal) (Reason, console.Handover) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var powerOff <-chan struct{}
	var con *console.Console
	if h.Console.Master >= 0 {
		var err error
		if con, err = console.Adopt(ctx, h.Console); err != nil {
			log.Printf("subhost %s: %v", h.Name, err)
			return Failed, console.Handover{Master: -1, Listener: -1}
		}
		powerOff = con.PowerOffRequests()
	}
	go reapOrphans(ctx, h.GuestPID)
	// Waiting needs little of this binary: give back what start-up
	// touched (the page cache keeps it for the next monitor).
	pageshed.Shed(pageshed.Unmap)
	reason := Failed
	if _, err := os.Stat(h.StopFile); err == nil {
		reason = StopAsked
	} else {
		select {
		case <-guestEnd(h.GuestPID, h.GuestStart):
			reason = GuestEnded
		case <-sigs:
			reason = StopAsked
		case <-powerOff:
			reason = PowerOffAsked
		}
	}
	if reason == StopAsked {
		askGuestToPowerOff(h)
	}
	if con == nil {
		return reason, console.Handover{Master: -1, Listener: -1}
	}
	ch, err := con.HandOver()
	if err != nil {
		log.Printf("subhost %s: %v", h.Name, err)
		con.Close()
		return reason, console.Handover{Master: -1, Listener: -1}
	}
	return reason, ch
}

// askGuestToPowerOff sends the guest's PID 1 its power-off signal at once,
// so that its shutdown overlaps the supervisor's start; the supervisor
// then applies the stop's timeout (subhost-init acts on the first
// request). A forced stop is the supervisor's to do.
func askGuestToPowerOff(h Handover) {
	var req struct {
		Force bool `json:"force"`
	}
	if data, err := os.ReadFile(h.StopFile); err == nil {
		json.Unmarshal(data, &req)
	}
	if req.Force {
		return
	}
	p, err := proc.Open(h.GuestPID, h.GuestStart)
	if err != nil {
		return
	}
	defer p.Close()
	p.Signal(unix.SIGPWR)
}

// guestEnd is closed when the guest's PID 1 has exited. It waits with
// WNOWAIT: the zombie stays for the supervisor to reap, which learns how
// it ended. A PID 1 that is not this process's child (it should always
// be) is watched through a pidfd.
func guestEnd(pid int, start uint64) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var info unix.Siginfo
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if err == nil {
				return
			}
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		p, err := proc.Open(pid, start)
		if err != nil {
			return
		}
		defer p.Close()
		for !p.WaitExit(time.Hour) {
		}
	}()
	return done
}

// reapOrphans reaps, until ctx ends, every child of this process but the
// guest, at each SIGCHLD. The supervisor is a child subreaper (so that
// nothing a boot starts escapes it), and a daemon a site's script stage
// started becomes its child once the script and its plugin are gone: each
// one that exits would stay a zombie for as long as the guest runs. The
// guest is left for the supervisor to reap, which learns how it ended;
// the monitor starts no child of its own.
func reapOrphans(ctx context.Context, guest int) {
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	defer signal.Stop(sigchld)
	for {
		for _, pid := range children() {
			if pid != guest {
				var ws unix.WaitStatus
				unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-sigchld:
		}
	}
}

// children lists this process's children, from every thread's
// /proc/self/task/TID/children (an orphan goes to whichever thread).
func children() []int {
	files, _ := filepath.Glob("/proc/self/task/*/children")
	var pids []int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(field); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
