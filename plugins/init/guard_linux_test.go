package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/internal/seccompguard"
	"github.com/subhost/subhost/internal/testbin"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// buildProbe builds testdata/guardprobe statically.
func buildProbe(t *testing.T) string { return buildTestdata(t, "guardprobe") }

// buildTestdata builds the command testdata/name statically.
func buildTestdata(t *testing.T, name string) string {
	t.Helper()
	return testbin.MustBuild(t, name, "./plugins/init/testdata/"+name)
}

// TestGuard boots testdata/guardprobe with a read-only loop device as
// /dev/vdc and checks, from inside the guest, that the seccomp guard and
// the dropped capabilities refuse what could reach the host, and that
// what a guest needs still works. The loop device must come out of it
// attached to the same file.
func TestGuard(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	probe := buildProbe(t)

	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, append([]byte("guard marker"), make([]byte, 1<<20)...), 0o644); err != nil {
		t.Fatal(err)
	}
	dev, f, err := loopdev.Attach(img, loopdev.Options{ReadOnly: true, Tag: "subhost-guard-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if err := loopdev.Detach(*dev); err != nil {
			t.Errorf("detach %s: %v", dev.Path, err)
		}
	})

	root := scratchRoot(t, "exit")
	// As the mount stages mount a guest root on the host: nosuid, nodev.
	if err := unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		t.Fatal(err)
	}
	req := guestRequest(t, root, map[string]string{"init_binary": probe})
	req.Record.Devices = []sdk.Device{{GuestName: "vdc", HostPath: dev.Path, Major: dev.Major, Minor: dev.Minor, ReadOnly: true}}
	placeCgroups(t, req)
	res := upGuest(t, &stage{}, req)
	if ws, ok := reap(t, res.Record.GuestPID, 20*time.Second); !ok || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("guardprobe ended with %v", ws)
	}
	b, err := os.ReadFile(filepath.Join(root, "guard.json"))
	if err != nil {
		t.Fatalf("no report from the guest: %v", err)
	}
	var r map[string]string
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{
		// Refused.
		"LOOP_GET_STATUS64": "EPERM", "LOOP_SET_STATUS64": "EPERM", "LOOP_CHANGE_FD": "EPERM",
		"LOOP_CLR_FD": "EPERM", "LOOP_CONFIGURE": "EPERM", "LOOP_CTL_GET_FREE": "EPERM",
		"mknodat-block": "EPERM", "mknod-block": "EPERM",
		"FIFREEZE": "EPERM", "FS_IOC_SHUTDOWN": "EPERM", "open_by_handle_at": "EPERM",
		"init_module": "EPERM", "kexec_load": "EPERM", "swapon": "EPERM", "adjtimex": "EPERM",
		"remount-ro": "EPERM", "umount-force": "EPERM", "umount": "ok",
		"bpf": "EPERM", "perf_event_open": "EPERM", "keyctl": "EPERM", "add_key": "EPERM", "fanotify_init": "EPERM",
		// Allowed.
		"read-disk": "guard marker", "BLKGETSIZE64": "ok", "mknod-loop-control": "ok", "mknod-char": "ok",
		"bind-remount-ro": "ok", "mount-tmpfs": "ok", "sethostname": "ok", "reboot": "EINVAL",

		// Host-wide kernel knobs are read-only, the guest's own
		// namespaces' are not (each write puts the current value back).
		"wb:kernel/core_pattern": "EROFS", "wb:vm/swappiness": "EROFS",
		"wb:kernel/pid_max": "EROFS", "wb:fs/file-max": "EROFS",
		"wb:net/ipv4/ip_forward": "ok", "wb:kernel/hostname": "ok", "wb:kernel/domainname": "ok",
		"wb:kernel/shmmax": "ok", "wb:kernel/msgmnb": "ok", "wb:kernel/sem": "ok", "wb:fs/mqueue/msg_max": "ok",
		// Masked: they read as /dev/null.
		"read:/proc/keys": "0", "read:/proc/timer_list": "0",
		// setuid works inside: the guest's root is its own clone of the
		// host's nosuid mount.
		"suid-euid": "0",
	}
	if deviceCgroup(t) {
		// The device cgroup refuses the node before the guard can refuse
		// its requests (the guard's own tests cover those).
		want["mknod-loop-control"], want["LOOP_CTL_GET_FREE"] = "EPERM", ""
	}
	// What this kernel may lack (CONFIG_MODULES, CONFIG_PROC_KCORE,
	// CONFIG_MAGIC_SYSRQ, firmware tables).
	for _, o := range []struct{ host, key, want string }{
		{"/proc/sys/kernel/modprobe", "wb:kernel/modprobe", "EROFS"},
		{"/proc/sysrq-trigger", "open-w:sysrq-trigger", "EROFS"},
		{"/proc/kcore", "read:/proc/kcore", "0"},
		{"/proc/kpageflags", "read:/proc/kpageflags", "0"},
		{"/proc/mtrr", "read:/proc/mtrr", "0"},
		{"/sys/firmware", "entries:/sys/firmware", "0"},
	} {
		if _, err := os.Stat(o.host); err == nil {
			want[o.key] = o.want
		}
	}
	for k, w := range want {
		if r[k] != w {
			t.Errorf("guest %s: %q, want %s", k, r[k], w)
		}
	}
	// PID 1's capabilities lack the dropped ones, in every set.
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		v, err := strconv.ParseUint(r[k], 16, 64)
		if err != nil {
			t.Errorf("guest %s: %q: %v", k, r[k], err)
			continue
		}
		if v&seccompguard.DroppedMask() != 0 {
			t.Errorf("guest %s %016x still has %016x", k, v, v&seccompguard.DroppedMask())
		}
		if k == "CapBnd" {
			for _, c := range []int{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_SYS_BOOT, unix.CAP_MKNOD, unix.CAP_SETUID} {
				if v&(1<<c) == 0 {
					t.Errorf("guest CapBnd %016x lacks capability %d", v, c)
				}
			}
		}
	}
	// PID 1 starts with SIGHUP and SIGINT ignored, until it takes them:
	// the Go runtime would otherwise end it on either before it can (a
	// console that hangs up as its supervisor dies, a ^C).
	if v, err := strconv.ParseUint(r["SigIgn"], 16, 64); err != nil || v&(1<<(unix.SIGHUP-1)) == 0 || v&(1<<(unix.SIGINT-1)) == 0 {
		t.Errorf("guest PID 1 started with SigIgn %q: want SIGHUP and SIGINT ignored", r["SigIgn"])
	}
	if o := r["root-mount-options"]; o == "" || hasOpt(o, "nosuid") {
		t.Errorf("the guest's / is mounted %q: want its own clone, without nosuid", o)
	}
	if t.Failed() {
		t.Logf("the guest said:\n%s", b)
	}
	// The same setuid-root file, from the host side, as uid 65534: the
	// host's mount is nosuid, so it gets no root.
	for d := root; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil { // t.TempDir's are 0700
			t.Fatal(err)
		}
	}
	cmd := exec.Command(filepath.Join(root, "suidprobe"), "euid")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.Output(); err != nil || string(out) != "65534" {
		t.Errorf("the guest's setuid-root file run from the host as uid 65534: euid %q (%v), want 65534", out, err)
	}

	// The loop device still serves the same file, read-only.
	devs, err := loopdev.FindByBacking(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].Path != dev.Path || !devs[0].ReadOnly || devs[0].Offset != 0 {
		t.Errorf("after the guest, %s is %+v, want attached read-only to %s as before", dev.Path, devs, img)
	}
	buf := make([]byte, 12)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "guard marker" {
		t.Errorf("read %s after the guest: %q %v", dev.Path, buf, err)
	}
}
