package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/launcher"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// TestGuestView boots testinit with a console and two disk nodes and
// checks what the guest's PID 1 sees.
func TestGuestView(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	root := scratchRoot(t, "exit")
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(ptmx)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	maj0, min0 := statDev(t, "/dev/loop0")
	maj1, min1 := statDev(t, "/dev/loop1")
	req := guestRequest(t, root, nil)
	req.Console = tty.Name()
	req.Record.Devices = []sdk.Device{
		{GuestName: "vdb", HostPath: "/dev/loop0", Major: maj0, Minor: min0},
		{GuestName: "vdb1", HostPath: "/dev/loop1", Major: maj1, Minor: min1, ReadOnly: true},
	}
	placeCgroups(t, req)
	res := upGuest(t, &stage{}, req)
	if res.Record.Hostname != "tguest" || res.Record.GuestPID <= 1 || res.Record.GuestStartTime == 0 {
		t.Errorf("record %+v", res.Record)
	}
	r := readReport(t, root)
	ws, _ := reap(t, res.Record.GuestPID, 10*time.Second)
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("testinit ended with %v", ws)
	}

	if r.PID != 1 || r.PPID != 0 || r.SID != 1 {
		t.Errorf("pid %d ppid %d sid %d, want 1 0 1", r.PID, r.PPID, r.SID)
	}
	if r.Hostname != "tguest" || r.Cwd != "/" || r.Umask != 0o022 {
		t.Errorf("hostname %q cwd %q umask %#o", r.Hostname, r.Cwd, r.Umask)
	}
	if want := []string{"/sbin/subhost-init", "--mode", "sysv", "--shell", "/bin/bash", "--shutdown-timeout", "30s"}; !slices.Equal(r.Args, want) {
		t.Errorf("args %q, want %q", r.Args, want)
	}
	if want := []string{"container=subhost", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=linux", "HOME=/root"}; !slices.Equal(r.Env, want) {
		t.Errorf("env %q, want %q", r.Env, want)
	}
	if r.Ctty != "pgrp 1" {
		t.Errorf("controlling terminal: %s, want the console with pgrp 1", r.Ctty)
	}

	// No descriptor of PID 1 leads out of the guest.
	for fd, target := range r.FDs {
		switch {
		case fd == "0" || fd == "1" || fd == "2":
			if target != "/dev/console" {
				t.Errorf("fd %s -> %q, want /dev/console", fd, target)
			}
		case target == "/proc/1/fd", strings.HasPrefix(target, "anon_inode:"), strings.HasPrefix(target, "pipe:"):
			// testinit's own, made inside the guest
		default:
			t.Errorf("PID 1 has fd %s -> %q", fd, target)
		}
	}

	m := parseMountinfo(r.Mountinfo)
	wantMounts := map[string]string{"/": "tmpfs", "/proc": "proc", "/sys": "sysfs", "/dev": "tmpfs", "/dev/pts": "devpts",
		"/dev/shm": "tmpfs", "/dev/console": "devpts", "/run": "tmpfs"}
	for at, fstype := range wantMounts {
		if m[at].fstype != fstype {
			t.Errorf("guest mount at %s: %q, want %s", at, m[at].fstype, fstype)
		}
	}
	for at := range m {
		if _, ok := wantMounts[at]; !ok && !kernelFileMount(at) {
			t.Errorf("unexpected guest mount at %s (%s)", at, m[at].fstype)
		}
	}
	// /proc/sys is read-only but for the guest's own namespaces' entries.
	if !hasOpt(m["/proc/sys"].opts, "ro") {
		t.Errorf("/proc/sys is not read-only: %q", m["/proc/sys"].opts)
	}
	for _, at := range []string{"/proc/sys/net", "/proc/sys/kernel/hostname", "/proc/sys/kernel/shmmax", "/proc/sys/fs/mqueue"} {
		if m[at].fstype != "proc" || !hasOpt(m[at].opts, "rw") {
			t.Errorf("guest mount at %s: %+v, want a writable proc", at, m[at])
		}
	}
	if !hasOpt(m["/sys"].opts, "ro") {
		t.Errorf("/sys is not read-only: %s", m["/sys"].opts)
	}
	for _, o := range []string{"nosuid", "nodev", "noexec"} {
		if !hasOpt(m["/proc"].opts, o) {
			t.Errorf("/proc lacks %s: %s", o, m["/proc"].opts)
		}
	}
	if !hasOpt(m["/dev"].opts, "nosuid") || !hasOpt(m["/run"].opts, "nosuid") {
		t.Errorf("/dev or /run not nosuid: %s, %s", m["/dev"].opts, m["/run"].opts)
	}
	if !hasOpt(m["/dev/pts"].superOpts, "ptmxmode=666") || !hasOpt(m["/dev/pts"].superOpts, "mode=620") {
		t.Errorf("/dev/pts options %s", m["/dev/pts"].superOpts)
	}

	wantDev := map[string]devNode{
		"null": {Type: "c", Perm: 0o666, Major: 1, Minor: 3}, "zero": {Type: "c", Perm: 0o666, Major: 1, Minor: 5},
		"full": {Type: "c", Perm: 0o666, Major: 1, Minor: 7}, "random": {Type: "c", Perm: 0o666, Major: 1, Minor: 8},
		"urandom": {Type: "c", Perm: 0o666, Major: 1, Minor: 9}, "tty": {Type: "c", Perm: 0o666, Major: 5, Minor: 0},
		"vdb":  {Type: "b", Perm: 0o660, Major: maj0, Minor: min0},
		"vdb1": {Type: "b", Perm: 0o440, Major: maj1, Minor: min1},
		"ptmx": {Type: "l", Link: "pts/ptmx"}, "fd": {Type: "l", Link: "/proc/self/fd"},
		"stdin": {Type: "l", Link: "/proc/self/fd/0"}, "stdout": {Type: "l", Link: "/proc/self/fd/1"}, "stderr": {Type: "l", Link: "/proc/self/fd/2"},
		"pts": {Type: "d", Perm: 0o755}, "shm": {Type: "d", Perm: 0o1777},
	}
	for name, want := range wantDev {
		got := r.Dev[name]
		if want.Type == "l" || want.Type == "d" {
			got.Major, got.Minor = 0, 0
		}
		if want.Type == "l" {
			got.Perm = 0
		}
		if got != want {
			t.Errorf("/dev/%s: %+v, want %+v", name, got, want)
		}
	}
	var st unix.Stat_t
	unix.Fstat(int(tty.Fd()), &st)
	if c := r.Dev["console"]; c.Type != "c" || c.Major != unix.Major(st.Rdev) || c.Minor != unix.Minor(st.Rdev) {
		t.Errorf("/dev/console %+v is not the console pty %d:%d", c, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	for name := range r.Dev {
		if _, ok := wantDev[name]; !ok && name != "console" {
			t.Errorf("unexpected /dev/%s", name)
		}
	}
	if !slices.Equal(r.Ifaces, []string{"lo"}) {
		t.Errorf("interfaces %q, want only lo in a new netns", r.Ifaces)
	}
	// The seccomp guard.
	if r.RemountRO != "EPERM" || r.Fspick != "EPERM" || !strings.HasPrefix(r.BusyboxRO, "exit status") {
		t.Errorf("remount ro: %s, busybox: %s, fspick: %s; want them refused", r.RemountRO, r.BusyboxRO, r.Fspick)
	}
	if r.BindRO != "ok" || r.BindWrite != "EROFS" || r.RootWrite != "ok" {
		t.Errorf("bind remount ro: %s, write under it: %s, write to /: %s", r.BindRO, r.BindWrite, r.RootWrite)
	}

	// The console carried testinit's output.
	deadline := time.After(5 * time.Second)
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, "testinit: hello from pid 1") {
				return
			}
		case <-deadline:
			t.Fatal("nothing from the guest on the console")
		}
	}
}

// TestSeccompRbindRoot boots a guest whose root is a bind of a scratch
// tmpfs, as an rbind of a host directory would be: the guest's
// `mount -o remount,ro /` must not make the tmpfs read-only.
func TestSeccompRbindRoot(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	scratch := scratchRoot(t, "exit")
	root := t.TempDir()
	if err := unix.Mount(scratch, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	res := upGuest(t, &stage{}, guestRequest(t, root, nil))
	r := readReport(t, root)
	reap(t, res.Record.GuestPID, 10*time.Second)
	if r.RemountRO != "EPERM" || !strings.HasPrefix(r.BusyboxRO, "exit status") {
		t.Errorf("guest remount ro: %s; busybox: %s", r.RemountRO, r.BusyboxRO)
	}
	if r.BindRO != "ok" {
		t.Errorf("guest bind remount: %s", r.BindRO)
	}
	// Without a console, PID 1's stdio is the guest's /dev/null.
	for _, fd := range []string{"0", "1", "2"} {
		if r.FDs[fd] != "/dev/null" {
			t.Errorf("fd %s -> %q, want /dev/null", fd, r.FDs[fd])
		}
	}
	if _, ok := r.Dev["console"]; ok {
		t.Errorf("a /dev/console without a console")
	}
	if err := os.WriteFile(filepath.Join(scratch, "still-writable"), nil, 0o644); err != nil {
		t.Errorf("the scratch tmpfs is no longer writable: %v", err)
	}
	if m := hostMount(t, scratch); !hasOpt(m.superOpts, "rw") || !hasOpt(m.opts, "rw") {
		t.Errorf("scratch tmpfs options now %s / %s", m.opts, m.superOpts)
	}
}

// TestHostileRoots plants symlinks to host paths where the stage works
// and checks that the boot is refused or confined and that the markers
// outside the root are untouched.
func TestHostileRoots(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	tests := []struct {
		name  string
		plant func(t *testing.T, root, outDir, outFile string)
		want  string // error text; "" means the guest boots, confined
	}{
		{"proc", func(t *testing.T, root, outDir, _ string) { symlink(t, outDir, root, "proc") },
			"launch guest: mount proc on /proc: /proc in the guest root is a symlink"},
		{"sys", func(t *testing.T, root, _, _ string) { symlink(t, "/sys", root, "sys") },
			"mount sysfs on /sys: /sys in the guest root is a symlink"},
		{"dev", func(t *testing.T, root, outDir, _ string) { symlink(t, outDir, root, "dev") },
			"mount tmpfs on /dev: /dev in the guest root is a symlink"},
		{"dev inside", func(t *testing.T, root, _, _ string) { symlink(t, "tmp", root, "dev") },
			"/dev in the guest root is a symlink"},
		{"dev file", func(t *testing.T, root, _, _ string) { os.WriteFile(filepath.Join(root, "dev"), nil, 0o644) },
			"/dev in the guest root is not a directory"},
		{"run", func(t *testing.T, root, outDir, _ string) { symlink(t, "../../../../../../.."+outDir, root, "run") },
			"mount tmpfs on /run: /run in the guest root is a symlink"},
		{"sbin dangling", func(t *testing.T, root, outDir, _ string) { symlink(t, outDir, root, "sbin") },
			"install /sbin/subhost-init: /sbin in the guest root is a symlink to"},
		{"sbin confined", func(t *testing.T, root, outDir, _ string) {
			symlink(t, outDir, root, "sbin")
			os.MkdirAll(filepath.Join(root, outDir), 0o755)
		}, ""},
		{"sbin relative escape", func(t *testing.T, root, outDir, _ string) {
			symlink(t, "../../../../../../.."+outDir, root, "sbin")
			os.MkdirAll(filepath.Join(root, outDir), 0o755)
		}, ""},
		{"subhost-init", func(t *testing.T, root, _, outFile string) {
			os.MkdirAll(filepath.Join(root, "sbin"), 0o755)
			symlink(t, outFile, root, "sbin/subhost-init")
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := scratchRoot(t, "exit")
			base := t.TempDir()
			outDir, outFile := filepath.Join(base, "outside"), filepath.Join(base, "outside-file")
			os.Mkdir(outDir, 0o755)
			os.WriteFile(outFile, []byte("marker\n"), 0o644)
			tt.plant(t, root, outDir, outFile)

			req := guestRequest(t, root, nil)
			res, err := (&stage{}).Up(ctx(t), req)
			if tt.want != "" {
				if err == nil {
					reap(t, res.Record.GuestPID, 10*time.Second)
					t.Fatalf("Up booted the guest; want %q", tt.want)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Up: %v\nwant %q", err, tt.want)
				}
				if c := children(t); len(c) > 0 {
					t.Errorf("a failed boot left child processes %v", c)
				}
				// The launcher may have started (subhost-init is
				// installed while it sets the guest up): its record
				// goes with it.
				if path, err := launchRecordPath(req.Subhost); err != nil {
					t.Error(err)
				} else if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a failed boot left its launch record %s (%v)", path, err)
				}
			} else {
				if err != nil {
					t.Fatalf("Up: %v", err)
				}
				readReport(t, root)
				reap(t, res.Record.GuestPID, 10*time.Second)
			}
			if entries, err := os.ReadDir(outDir); err != nil || len(entries) != 0 {
				t.Errorf("outside directory changed: %v %v", entries, err)
			}
			if b, err := os.ReadFile(outFile); err != nil || string(b) != "marker\n" {
				t.Errorf("outside file changed: %q %v", b, err)
			}
		})
	}
}

func symlink(t *testing.T, target, root, name string) {
	t.Helper()
	p := filepath.Join(root, name)
	os.RemoveAll(p)
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// TestInjectOnlyWhenDifferent: a second boot with the same subhost-init
// leaves the guest's copy alone; a new one replaces it.
func TestInjectOnlyWhenDifferent(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	root := scratchRoot(t, "exit")
	target := filepath.Join(root, "sbin/subhost-init")
	boot := func(params map[string]string) (ino uint64, mtime unix.Timespec) {
		t.Helper()
		os.Remove(filepath.Join(root, "report.json"))
		res := upGuest(t, &stage{}, guestRequest(t, root, params))
		readReport(t, root)
		reap(t, res.Record.GuestPID, 10*time.Second)
		var st unix.Stat_t
		if err := unix.Lstat(target, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&0o7777 != 0o755 || st.Uid != 0 {
			t.Errorf("/sbin/subhost-init mode %#o uid %d", st.Mode&0o7777, st.Uid)
		}
		return st.Ino, st.Mtim
	}
	ino1, mtime1 := boot(nil)
	time.Sleep(20 * time.Millisecond)
	ino2, mtime2 := boot(nil)
	if ino1 != ino2 || mtime1 != mtime2 {
		t.Errorf("the same subhost-init was written again")
	}
	other := filepath.Join(t.TempDir(), "subhost-init")
	copyFile(t, testInit(t), other, []byte("another build"))
	ino3, _ := boot(map[string]string{"init_binary": other})
	if ino3 == ino2 {
		t.Errorf("a different subhost-init was not written")
	}
}

// TestUpAgainAndDown: Up with a live guest returns it; Down powers it off
// with SIGPWR; Check tells; Down is idempotent.
func TestUpAgainAndDown(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	root := scratchRoot(t, "wait")
	s := stagetest.Serve(t, &stage{})
	req := guestRequest(t, root, nil)
	first := upGuest(t, s, req)
	readReport(t, root)
	pid := first.Record.GuestPID

	after := *req
	after.State = first.State
	if err := s.Check(ctx(t), &after); err != nil {
		t.Errorf("Check: %v", err)
	}
	second, err := s.Up(ctx(t), &after)
	if err != nil {
		t.Fatalf("Up again: %v", err)
	}
	if second.Record.GuestPID != pid || second.Record.GuestStartTime != first.Record.GuestStartTime || string(second.State) != string(first.State) {
		t.Errorf("Up again gave %+v %s, want %+v %s", second.Record, second.State, first.Record, first.State)
	}
	if c := children(t); !slices.Equal(c, []int{pid}) {
		t.Errorf("children %v, want only the guest %d", c, pid)
	}
	// The same root under another state: a conflict.
	moved := after
	moved.Record.Root = t.TempDir()
	if _, err := s.Up(ctx(t), &moved); !sdk.IsKind(err, sdk.KindConflict) {
		t.Errorf("Up with a live guest on another root: %v, want a conflict", err)
	}

	start := time.Now()
	if err := s.Down(ctx(t), &after); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("Down took %v for a guest that powers off on SIGPWR", time.Since(start))
	}
	ws, _ := reap(t, pid, 5*time.Second)
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("guest ended with %v, want exit 0 after SIGPWR", ws)
	}
	if _, err := os.Stat(filepath.Join(root, "got-sigpwr")); err != nil {
		t.Errorf("the guest did not get SIGPWR: %v", err)
	}
	if err := s.Check(ctx(t), &after); !sdk.IsKind(err, sdk.KindNotFound) {
		t.Errorf("Check after Down: %v, want not found", err)
	}
	if err := s.Down(ctx(t), &after); err != nil {
		t.Errorf("Down again: %v", err)
	}
	empty := guestRequest(t, root, nil)
	if err := s.Down(ctx(t), empty); err != nil {
		t.Errorf("Down from an empty state: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "sbin/subhost-init")); err != nil {
		t.Errorf("Down removed /sbin/subhost-init: %v", err)
	}
}

// TestDownKillsAfterTimeout: a guest that ignores SIGPWR is killed.
func TestDownKillsAfterTimeout(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	root := scratchRoot(t, "ignore")
	req := guestRequest(t, root, map[string]string{"shutdown_timeout": "1s"})
	res := upGuest(t, &stage{}, req)
	// A stop without a timeout of its own waits as long as PID 1 was given.
	if res.Record.GuestStopTimeoutMS != 1000 {
		t.Errorf("the record's guest stop timeout is %d ms, want the 1s shutdown_timeout", res.Record.GuestStopTimeoutMS)
	}
	readReport(t, root)
	req.State = res.State
	start := time.Now()
	if err := (&stage{}).Down(ctx(t), req); err != nil {
		t.Fatalf("Down: %v", err)
	}
	took := time.Since(start)
	if took < time.Second || took > 8*time.Second {
		t.Errorf("Down took %v, want about the 1s timeout", took)
	}
	ws, _ := reap(t, res.Record.GuestPID, 5*time.Second)
	if !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Errorf("guest ended with %v, want SIGKILL", ws)
	}
}

// TestDownSparesAnotherProcess: a recorded PID whose start time does not
// match is never signalled.
func TestDownSparesAnotherProcess(t *testing.T) {
	stagetest.RequireRoot(t)
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	start, _, err := procStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	req := &sdk.Request{Subhost: sdk.Subhost{Name: "x"}, Params: map[string]string{"shutdown_timeout": "1s"},
		Record: sdk.BootRecord{GuestPID: cmd.Process.Pid, GuestStartTime: start + 1}}
	if err := (&stage{}).Down(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	if !alive(cmd.Process.Pid, start) {
		t.Fatal("Down signalled a process that is not the recorded guest")
	}
	if err := (&stage{}).Check(ctx(t), req); !sdk.IsKind(err, sdk.KindNotFound) {
		t.Errorf("Check on a reused PID: %v, want not found", err)
	}
}

// TestNetns: the guest joins the boot record's netns and sees its links.
func TestNetns(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	ns := "shtinit" + strings.ReplaceAll(filepath.Base(t.TempDir()), "/", "")
	if len(ns) > 40 {
		ns = ns[:40]
	}
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "add", "tinit0", "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v %s", err, out)
	}
	root := scratchRoot(t, "exit")
	req := guestRequest(t, root, nil)
	req.Record.Netns = "/run/netns/" + ns
	res := upGuest(t, &stage{}, req)
	r := readReport(t, root)
	reap(t, res.Record.GuestPID, 10*time.Second)
	slices.Sort(r.Ifaces)
	if !slices.Equal(r.Ifaces, []string{"lo", "tinit0"}) {
		t.Errorf("guest interfaces %q, want lo and tinit0 from the netns", r.Ifaces)
	}

	// A path that is not a netns.
	req.Record.Netns = root
	if _, err := (&stage{}).Up(ctx(t), req); err == nil || !strings.Contains(err.Error(), "join netns") {
		t.Errorf("Up with a netns that is a directory: %v", err)
	}
}

// TestConformance runs the SDK's protocol sequence over real RPC.
func TestConformance(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	root := scratchRoot(t, "wait")
	t.Cleanup(func() {
		for _, pid := range children(t) {
			reap(t, pid, 10*time.Second)
		}
	})
	stagetest.Conformance(t, &stage{}, guestRequest(t, root, nil))
}

// kernelFileMount reports whether the guest mount at is one of those
// that make kernel files read-only or masked (internal/launcher).
func kernelFileMount(at string) bool {
	return at == "/proc/sys" || strings.HasPrefix(at, "/proc/sys/") || slices.Contains(launcher.ProtectedPaths(), at)
}
