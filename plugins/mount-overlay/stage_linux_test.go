package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/loopdev"
	"github.com/subhost/subhost/internal/mountinfo"
	"github.com/subhost/subhost/internal/testguest"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// scratch mounts a tmpfs on a fresh temporary directory: the subhost
// trees of a test live there, never on the machine's root filesystem
// (whose superblock a guest could remount through an rbind).
func scratch(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		t.Fatalf("mount scratch tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount scratch tmpfs %s: %v", dir, err)
		}
	})
	return dir
}

// request is the runner's request for subhost name at home, with BASE
// set when base is not "".
func request(name, home, base string) *sdk.Request {
	cfg := filepath.Join(home, "config")
	r := &sdk.Request{Stage: "mount-overlay", Subhost: sdk.Subhost{Name: name, Home: home, ConfigFile: cfg}}
	if base != "" {
		r.Subhost.Vars = map[string]sdk.Var{"BASE": {Words: []string{base}, Origin: cfg + ":1"}}
	}
	return r
}

// newHome makes the seed's tree HOME = parent/name with config, live,
// root and work, and returns the request for it. Down runs when the test
// ends, whatever happened.
func newHome(t *testing.T, parent, name, base string) *sdk.Request {
	t.Helper()
	home := filepath.Join(parent, name)
	for _, d := range []string{"live", "root", "work"} {
		mkdir(t, filepath.Join(home, d))
	}
	write(t, filepath.Join(home, "config"), "BASE="+base+"\n")
	req := request(name, home, base)
	downAtEnd(t, req)
	return req
}

func downAtEnd(t *testing.T, req *sdk.Request) {
	t.Cleanup(func() {
		if err := (&stage{}).Down(context.Background(), req); err != nil {
			t.Errorf("cleanup Down: %v", err)
		}
	})
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, content string) {
	t.Helper()
	mkdir(t, filepath.Dir(p))
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// makeImage builds NAME.img in home: a bare ext4 filesystem holding the
// tree at src, without mounting anything.
func makeImage(t *testing.T, home, name, src string) string {
	t.Helper()
	img := filepath.Join(home, name+".img")
	mkdir(t, home)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", src, img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return img
}

// imageHome makes HOME with an image NAME.img holding root/ (with file
// hello) and work/, and a mnt directory; no root or work of its own.
func imageHome(t *testing.T, parent, name, base string) *sdk.Request {
	t.Helper()
	home := filepath.Join(parent, name)
	src := filepath.Join(parent, name+"-src")
	write(t, filepath.Join(src, "root", "hello"), "from the image\n")
	write(t, filepath.Join(src, "root", "run.sh"), "#!/bin/sh\necho ran\n")
	os.Chmod(filepath.Join(src, "root", "run.sh"), 0o755)
	mkdir(t, filepath.Join(src, "work"))
	makeImage(t, home, name, src)
	mkdir(t, filepath.Join(home, "live"))
	mkdir(t, filepath.Join(home, "mnt"))
	req := request(name, home, base)
	downAtEnd(t, req)
	return req
}

func up(t *testing.T, req *sdk.Request) *sdk.Result {
	t.Helper()
	res, err := (&stage{}).Up(context.Background(), req)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	if want := filepath.Join(req.Subhost.Home, "live"); res.Record.Root != want {
		t.Errorf("boot record root %q, want %q", res.Record.Root, want)
	}
	if err := (&stage{}).Check(context.Background(), req); err != nil {
		t.Errorf("Check after Up: %v", err)
	}
	return res
}

func down(t *testing.T, req *sdk.Request) {
	t.Helper()
	if err := (&stage{}).Down(context.Background(), req); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if err := (&stage{}).Check(context.Background(), req); !sdk.IsKind(err, sdk.KindNotFound) {
		t.Errorf("Check after Down: %v, want not found", err)
	}
}

// mountsUnder lists the mount points at or under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := mountinfo.Self()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		if within(m.Mountpoint, dir) {
			out = append(out, m.Mountpoint)
		}
	}
	return out
}

func TestRbind(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	req := newHome(t, scratch(t), "rb", "")
	home := req.Subhost.Home
	write(t, filepath.Join(home, "root", "etc", "hostname"), "rb\n")

	up(t, req)
	hostSafe(t, filepath.Join(home, "live"))
	// As an older subhost left it (hibernating): Up adopts it, and makes
	// it nosuid,nodev.
	if err := unix.Mount("", filepath.Join(home, "live"), "", unix.MS_REMOUNT|unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(filepath.Join(home, "live"), &sfs); err != nil || sfs.Flags&(unix.ST_NOSUID|unix.ST_NODEV) != 0 {
		t.Fatalf("could not clear live's nosuid,nodev: %#x %v", sfs.Flags, err)
	}
	up(t, req)
	hostSafe(t, filepath.Join(home, "live"))
	if got := read(t, filepath.Join(home, "live", "etc", "hostname")); got != "rb\n" {
		t.Errorf("live shows %q", got)
	}
	write(t, filepath.Join(home, "live", "new"), "written in live")
	if got := read(t, filepath.Join(home, "root", "new")); got != "written in live" {
		t.Errorf("root/new is %q", got)
	}
	down(t, req)
	if got := names(t, filepath.Join(home, "live")); len(got) != 0 {
		t.Errorf("live after Down holds %q", got)
	}
}

func TestOverlay(t *testing.T) {
	for _, c := range []struct {
		name  string
		bases []string
	}{
		{"one lower", []string{"b1"}},
		{"two lowers", []string{"b1", "b2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			stagetest.RequireRoot(t)
			stagetest.NoLeaks(t)
			dir := scratch(t)
			var bases []string
			for _, b := range c.bases {
				p := filepath.Join(dir, b)
				write(t, filepath.Join(p, "only-"+b), b)
				write(t, filepath.Join(p, "shared"), "from "+b)
				bases = append(bases, p)
			}
			req := newHome(t, dir, "ov", strings.Join(bases, ":"))
			home := req.Subhost.Home
			res := up(t, req)
			if !strings.Contains(string(res.State), `"kind":"overlay"`) {
				t.Errorf("state %s", res.State)
			}
			live := filepath.Join(home, "live")
			for _, b := range c.bases {
				if got := read(t, filepath.Join(live, "only-"+b)); got != b {
					t.Errorf("live/only-%s is %q", b, got)
				}
			}
			// BASE lists the uppermost lower directory first.
			if got := read(t, filepath.Join(live, "shared")); got != "from b1" {
				t.Errorf("live/shared is %q, want the first BASE's", got)
			}
			write(t, filepath.Join(live, "new"), "new")
			write(t, filepath.Join(live, "shared"), "changed")
			if got := read(t, filepath.Join(home, "root", "new")); got != "new" {
				t.Errorf("root/new is %q", got)
			}
			if got := read(t, filepath.Join(home, "root", "shared")); got != "changed" {
				t.Errorf("root/shared is %q", got)
			}
			for _, b := range bases {
				if got := names(t, b); len(got) != 2 || read(t, filepath.Join(b, "shared")) != "from "+filepath.Base(b) {
					t.Errorf("base %s changed: %q", b, got)
				}
			}
			ms, _ := mountinfo.Self()
			if top := mountinfo.TopAt(ms, live); top == nil || top.FSType != "overlay" || !strings.Contains(top.Super, "redirect_dir=nofollow") {
				t.Errorf("live mount: %+v", top)
			}
			hostSafe(t, live)
			down(t, req)
		})
	}
}

func TestImage(t *testing.T) {
	for _, withBase := range []bool{true, false} {
		name := "no base (rbind of mnt/root)"
		if withBase {
			name = "with base (overlay)"
		}
		t.Run(name, func(t *testing.T) {
			stagetest.RequireRoot(t)
			stagetest.NoLeaks(t)
			dir := scratch(t)
			base := ""
			if withBase {
				base = filepath.Join(dir, "base")
				write(t, filepath.Join(base, "from-base"), "base")
			}
			req := imageHome(t, dir, "im", base)
			home := req.Subhost.Home
			live := filepath.Join(home, "live")

			up(t, req)
			if got := read(t, filepath.Join(live, "hello")); got != "from the image\n" {
				t.Errorf("live/hello is %q", got)
			}
			if withBase && read(t, filepath.Join(live, "from-base")) != "base" {
				t.Error("live does not show the base")
			}
			hostSafe(t, live)
			// mnt is noexec; live must not be.
			if out, err := exec.Command(filepath.Join(live, "run.sh")).CombinedOutput(); err != nil || string(out) != "ran\n" {
				t.Errorf("run a program from live: %v: %s", err, out)
			}
			if err := exec.Command(filepath.Join(home, "mnt", "root", "run.sh")).Run(); err == nil {
				t.Error("a program ran from mnt, which should be noexec")
			}
			write(t, filepath.Join(live, "new"), "kept in the image")
			if got := read(t, filepath.Join(home, "mnt", "root", "new")); got != "kept in the image" {
				t.Errorf("mnt/root/new is %q", got)
			}
			loops, _ := loopdev.FindByBacking(filepath.Join(home, "im.img"))
			if len(loops) != 1 || !loops[0].Autoclear {
				t.Errorf("loop devices of the image: %+v", loops)
			}
			down(t, req)
			if got := mountsUnder(t, home); len(got) != 0 {
				t.Errorf("still mounted: %q", got)
			}
			if loops, _ := loopdev.FindByBacking(filepath.Join(home, "im.img")); len(loops) != 0 {
				t.Errorf("loop devices left: %+v", loops)
			}
			// What was written is in the image.
			up(t, req)
			if got := read(t, filepath.Join(live, "new")); got != "kept in the image" {
				t.Errorf("after a second Up, live/new is %q", got)
			}
			down(t, req)
		})
	}
}

func TestHibernationReentry(t *testing.T) {
	for _, c := range []struct {
		name string
		make func(t *testing.T, dir string) *sdk.Request
	}{
		{"rbind", func(t *testing.T, dir string) *sdk.Request { return newHome(t, dir, "h", "") }},
		{"overlay", func(t *testing.T, dir string) *sdk.Request {
			mkdir(t, filepath.Join(dir, "base"))
			return newHome(t, dir, "h", filepath.Join(dir, "base"))
		}},
		{"image", func(t *testing.T, dir string) *sdk.Request {
			mkdir(t, filepath.Join(dir, "base"))
			return imageHome(t, dir, "h", filepath.Join(dir, "base"))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			stagetest.RequireRoot(t)
			stagetest.NoLeaks(t)
			dir := scratch(t)
			req := c.make(t, dir)
			first := up(t, req)
			mounted := mountsUnder(t, req.Subhost.Home)
			// A new runner process: no state handed back.
			second := up(t, req)
			if first.Record.Root != second.Record.Root || string(first.State) != string(second.State) {
				t.Errorf("re-entry gave another result:\n%+v\n%+v", first, second)
			}
			if again := mountsUnder(t, req.Subhost.Home); !slices.Equal(mounted, again) {
				t.Errorf("re-entry changed the mounts: %q -> %q", mounted, again)
			}
			down(t, req)
			if got := mountsUnder(t, req.Subhost.Home); len(got) != 0 {
				t.Errorf("still mounted after one Down: %q", got)
			}
		})
	}
}

func TestDownFromEmptyState(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	dir := scratch(t)
	s := &stage{}
	ctx := context.Background()
	for _, req := range []*sdk.Request{
		request("gone", filepath.Join(dir, "gone"), ""),
		newHome(t, dir, "fresh", ""),
		imageHome(t, dir, "img", ""),
		// A config that no longer validates.
		request("fresh", filepath.Join(dir, "fresh"), "relative:/nope"),
	} {
		for i := 0; i < 2; i++ {
			if err := s.Down(ctx, req); err != nil {
				t.Errorf("Down %s (%d): %v", req.Subhost.Home, i, err)
			}
		}
	}
}

func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name string
		make func(t *testing.T, dir string) *sdk.Request
	}{
		{"rbind", func(t *testing.T, dir string) *sdk.Request { return newHome(t, dir, "c", "") }},
		{"overlay", func(t *testing.T, dir string) *sdk.Request {
			mkdir(t, filepath.Join(dir, "b1"))
			mkdir(t, filepath.Join(dir, "b2"))
			return newHome(t, dir, "c", filepath.Join(dir, "b1")+":"+filepath.Join(dir, "b2"))
		}},
		{"image", func(t *testing.T, dir string) *sdk.Request {
			mkdir(t, filepath.Join(dir, "b1"))
			return imageHome(t, dir, "c", filepath.Join(dir, "b1"))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			stagetest.RequireRoot(t)
			stagetest.NoLeaks(t)
			req := c.make(t, scratch(t))
			stagetest.Conformance(t, &stage{}, req)
		})
	}
}

// TestBusy: a process inside live keeps Down from unmounting it, and
// Down says which; nothing is lazily detached.
func TestBusy(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	req := newHome(t, scratch(t), "busy", "")
	up(t, req)
	sleeper := exec.Command("sleep", "60")
	sleeper.Dir = filepath.Join(req.Subhost.Home, "live")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sleeper.Process.Kill()
		sleeper.Wait()
	}()
	time.Sleep(100 * time.Millisecond)
	err := (&stage{}).Down(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "busy") || !strings.Contains(err.Error(), "(sleep) cwd") {
		t.Fatalf("Down with a process in live: %v", err)
	}
	if err := (&stage{}).Check(context.Background(), req); err != nil {
		t.Errorf("live went away although it was busy: %v", err)
	}
	sleeper.Process.Kill()
	sleeper.Wait()
	down(t, req)
}

func TestBadInput(t *testing.T) {
	for _, c := range []struct {
		name string
		// setup makes the tree in dir and returns the request; hostDir,
		// when not "", must be the same after Up as before.
		setup func(t *testing.T, dir string) (req *sdk.Request, hostDir string)
		kind  sdk.ErrorKind
		want  string
		// upOnly: only Up can see it (inside the image).
		upOnly bool
	}{
		{
			name: "missing base",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				return newHome(t, dir, "x", filepath.Join(dir, "nope")), ""
			},
			kind: sdk.KindInvalidConfig, want: `/x/config:1: BASE "` + "DIR" + `/nope": no such directory`,
		},
		{
			name: "base is a file",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				write(t, filepath.Join(dir, "file"), "")
				return newHome(t, dir, "x", filepath.Join(dir, "file")), ""
			},
			kind: sdk.KindInvalidConfig, want: "not a directory",
		},
		{
			name: "missing root",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				req := newHome(t, dir, "x", "")
				os.Remove(filepath.Join(req.Subhost.Home, "root"))
				return req, ""
			},
			kind: sdk.KindInvalidConfig, want: `root "DIR/x/root": no such directory`,
		},
		{
			name: "missing work with base",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				mkdir(t, filepath.Join(dir, "base"))
				req := newHome(t, dir, "x", filepath.Join(dir, "base"))
				os.Remove(filepath.Join(req.Subhost.Home, "work"))
				return req, ""
			},
			kind: sdk.KindInvalidConfig, want: `work "DIR/x/work": no such directory`,
		},
		{
			name: "upper and work on different filesystems",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				mkdir(t, filepath.Join(dir, "base"))
				req := newHome(t, dir, "x", filepath.Join(dir, "base"))
				work := filepath.Join(req.Subhost.Home, "work")
				if err := unix.Mount("tmpfs", work, "tmpfs", 0, ""); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { unix.Unmount(work, 0) })
				return req, ""
			},
			kind: sdk.KindInvalidConfig, want: "are on different filesystems",
		},
		{
			name: "comma in home",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				mkdir(t, filepath.Join(dir, "base"))
				return newHome(t, dir, "a,lowerdir=x", filepath.Join(dir, "base")), ""
			},
			kind: sdk.KindInvalidConfig, want: `contains ","`,
		},
		{
			name: "colon in home",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				mkdir(t, filepath.Join(dir, "base"))
				req := newHome(t, filepath.Join(dir, "a:b"), "x", filepath.Join(dir, "base"))
				return req, ""
			},
			kind: sdk.KindInvalidConfig, want: `contains ":"`,
		},
		{
			name: "equals in home",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				mkdir(t, filepath.Join(dir, "base"))
				return newHome(t, filepath.Join(dir, "upperdir="), "x", filepath.Join(dir, "base")), ""
			},
			kind: sdk.KindInvalidConfig, want: `contains "="`,
		},
		{
			name: "space in home",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				mkdir(t, filepath.Join(dir, "base"))
				return newHome(t, filepath.Join(dir, "a b"), "x", filepath.Join(dir, "base")), ""
			},
			kind: sdk.KindInvalidConfig, want: `contains " "`,
		},
		{
			name: "comma in base",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				mkdir(t, filepath.Join(dir, "b,upperdir=x"))
				return newHome(t, dir, "x", filepath.Join(dir, "b,upperdir=x")), ""
			},
			kind: sdk.KindInvalidConfig, want: `BASE "DIR/b,upperdir=x": contains ","`,
		},
		{
			name: "home reached through a symlink with a comma",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				mkdir(t, filepath.Join(dir, "base"))
				req := newHome(t, filepath.Join(dir, "a,b"), "x", filepath.Join(dir, "base"))
				link := filepath.Join(dir, "x")
				os.Symlink(req.Subhost.Home, link)
				return request("x", link, filepath.Join(dir, "base")), ""
			},
			kind: sdk.KindInvalidConfig, want: `which contains ","`,
		},
		{
			name: "base overlaps root",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				mkdir(t, filepath.Join(dir, "x", "root", "sub"))
				return newHome(t, dir, "x", filepath.Join(dir, "x", "root", "sub")), ""
			},
			kind: sdk.KindInvalidConfig, want: "overlaps",
		},
		{
			name: "work holds foreign files",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				mkdir(t, filepath.Join(dir, "base"))
				req := newHome(t, dir, "x", filepath.Join(dir, "base"))
				write(t, filepath.Join(req.Subhost.Home, "work", "precious"), "data")
				return req, filepath.Join(req.Subhost.Home, "work")
			},
			kind: sdk.KindConflict, want: `holds "precious"`,
		},
		{
			name: "work/work is a file",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				mkdir(t, filepath.Join(dir, "base"))
				req := newHome(t, dir, "x", filepath.Join(dir, "base"))
				write(t, filepath.Join(req.Subhost.Home, "work", "work"), "data")
				return req, ""
			},
			kind: sdk.KindConflict, want: `"work" is not a directory`,
		},
		{
			name: "live is a symlink",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				req := newHome(t, dir, "x", "")
				mkdir(t, filepath.Join(dir, "elsewhere"))
				live := filepath.Join(req.Subhost.Home, "live")
				os.Remove(live)
				os.Symlink(filepath.Join(dir, "elsewhere"), live)
				return req, filepath.Join(dir, "elsewhere")
			},
			kind: sdk.KindInvalidConfig, want: "is a symlink",
		},
		{
			name: "something else mounted on live",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				req := newHome(t, dir, "x", "")
				live := filepath.Join(req.Subhost.Home, "live")
				if err := unix.Mount("tmpfs", live, "tmpfs", 0, ""); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { unix.Unmount(live, 0) })
				return req, ""
			},
			kind: sdk.KindConflict, want: `already has tmpfs "tmpfs" mounted`,
		},
		{
			name: "upper and work in use by another subhost's overlay",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				mkdir(t, filepath.Join(dir, "base"))
				other := newHome(t, dir, "other", filepath.Join(dir, "base"))
				up(t, other)
				req := newHome(t, dir, "x", filepath.Join(dir, "base"))
				for _, d := range []string{"root", "work"} {
					p := filepath.Join(req.Subhost.Home, d)
					os.Remove(p)
					os.Symlink(filepath.Join(other.Subhost.Home, d), p)
				}
				return req, ""
			},
			kind: sdk.KindConflict, want: `is in use by the overlay mounted on "DIR/other/live"`,
		},
		{
			name: "root in use by another subhost's rbind",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				other := newHome(t, dir, "other", "")
				up(t, other)
				req := newHome(t, dir, "x", "")
				p := filepath.Join(req.Subhost.Home, "root")
				os.Remove(p)
				os.Symlink(filepath.Join(other.Subhost.Home, "root"), p)
				return req, ""
			},
			kind: sdk.KindConflict, want: `is in use: it is mounted on "DIR/other/live"`,
		},
		{
			name: "image is a directory",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				req := newHome(t, dir, "x", "")
				mkdir(t, filepath.Join(req.Subhost.Home, "x.img"))
				return req, ""
			},
			kind: sdk.KindInvalidConfig, want: "not a regular file",
		},
		{
			name: "image holds no filesystem",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				req := newHome(t, dir, "x", "")
				write(t, filepath.Join(req.Subhost.Home, "x.img"), strings.Repeat("\x00", 1<<20))
				return req, ""
			},
			kind: sdk.KindInvalidConfig, want: "no ext2/3/4, XFS or Btrfs filesystem",
		},
		{
			name: "image attached elsewhere",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				req := imageHome(t, dir, "x", "")
				_, f, err := loopdev.Attach(filepath.Join(req.Subhost.Home, "x.img"), loopdev.Options{Autoclear: true})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { f.Close() })
				return req, ""
			},
			kind: sdk.KindConflict, want: "which is not mounted by this subhost",
		},
		{
			name: "symlinked root inside the image points at a host directory",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				host := filepath.Join(dir, "hostdir")
				write(t, filepath.Join(host, "keep"), "host data")
				src := filepath.Join(dir, "src")
				mkdir(t, filepath.Join(src, "work"))
				if err := os.Symlink(host, filepath.Join(src, "root")); err != nil {
					t.Fatal(err)
				}
				home := filepath.Join(dir, "x")
				makeImage(t, home, "x", src)
				mkdir(t, filepath.Join(home, "live"))
				mkdir(t, filepath.Join(home, "mnt"))
				mkdir(t, filepath.Join(dir, "base"))
				req := request("x", home, filepath.Join(dir, "base"))
				downAtEnd(t, req)
				return req, host
			},
			kind: sdk.KindInvalidConfig, want: `/root: is a symlink (refused)`, upOnly: true,
		},
		{
			name: "symlinked work inside the image points at a host directory",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				host := filepath.Join(dir, "hostdir")
				mkdir(t, host)
				src := filepath.Join(dir, "src")
				mkdir(t, filepath.Join(src, "root"))
				if err := os.Symlink(host, filepath.Join(src, "work")); err != nil {
					t.Fatal(err)
				}
				home := filepath.Join(dir, "x")
				makeImage(t, home, "x", src)
				mkdir(t, filepath.Join(dir, "base"))
				req := request("x", home, filepath.Join(dir, "base"))
				downAtEnd(t, req)
				return req, host
			},
			kind: sdk.KindInvalidConfig, want: `/work: is a symlink (refused)`, upOnly: true,
		},
		{
			name: "image without root",
			setup: func(t *testing.T, dir string) (*sdk.Request, string) {
				src := filepath.Join(dir, "src")
				mkdir(t, filepath.Join(src, "work"))
				home := filepath.Join(dir, "x")
				makeImage(t, home, "x", src)
				req := request("x", home, "")
				downAtEnd(t, req)
				return req, ""
			},
			kind: sdk.KindInvalidConfig, want: `/root: no such directory`, upOnly: true,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			stagetest.RequireRoot(t)
			stagetest.NoLeaks(t)
			dir := scratch(t)
			req, hostDir := c.setup(t, dir)
			want := strings.ReplaceAll(c.want, "DIR", dir)
			var hostBefore []string
			if hostDir != "" {
				hostBefore = tree(t, hostDir)
			}
			before, err := stagetest.Take()
			if err != nil {
				t.Fatal(err)
			}
			s := &stage{}
			ctx := context.Background()
			verr := s.Validate(ctx, req)
			if c.upOnly {
				if verr != nil {
					t.Errorf("Validate: %v (only Up can see this one)", verr)
				}
			} else if !sdk.IsKind(verr, c.kind) || !strings.Contains(verr.Error(), want) {
				t.Errorf("Validate: %v\nwant a %s error containing %q", verr, c.kind, want)
			}
			_, err = s.Up(ctx, req)
			if !sdk.IsKind(err, c.kind) || !strings.Contains(err.Error(), want) {
				t.Errorf("Up: %v\nwant a %s error containing %q", err, c.kind, want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("the error is not one line: %q", err)
			}
			after, err := stagetest.Take()
			if err != nil {
				t.Fatal(err)
			}
			// An autoclear loop device may take a moment to go.
			for i := 0; i < 40 && len(after.Diff(before)) > 0; i++ {
				time.Sleep(50 * time.Millisecond)
				after, _ = stagetest.Take()
			}
			if diff := after.Diff(before); len(diff) > 0 {
				t.Errorf("a failed Up changed the host:\n  %s", strings.Join(diff, "\n  "))
			}
			if hostDir != "" {
				if got := tree(t, hostDir); !slices.Equal(got, hostBefore) {
					t.Errorf("%s changed: %q -> %q", hostDir, hostBefore, got)
				}
			}
		})
	}
}

// tree lists every file under dir with its content.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			out = append(out, p+" "+err.Error())
			return nil
		}
		line := strings.TrimPrefix(p, dir)
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			line += " " + string(b)
		}
		out = append(out, line)
		return nil
	})
	return out
}

// TestDownLeavesForeignMounts: what is on live or mnt but is not this
// subhost's is not Down's to remove.
func TestDownLeavesForeignMounts(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	req := imageHome(t, scratch(t), "f", "")
	for _, d := range []string{"live", "mnt"} {
		p := filepath.Join(req.Subhost.Home, d)
		if err := unix.Mount("tmpfs", p, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(p, 0) })
	}
	if err := (&stage{}).Down(context.Background(), req); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if got := mountsUnder(t, req.Subhost.Home); len(got) != 2 {
		t.Errorf("mounts after Down: %q, want the two foreign ones", got)
	}
}

// A loop device on the subhost's NAME.img that it did not attach (a
// losetup, another subhost's DISKS) is left by Down, with the stage's own
// mount and device gone.
func TestDownLeavesForeignLoopDevices(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	req := imageHome(t, scratch(t), "fl", "")
	img := filepath.Join(req.Subhost.Home, "fl.img")
	up(t, req)
	foreign, hold, err := loopdev.Attach(img, loopdev.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	hold.Close()
	t.Cleanup(func() { loopdev.Detach(*foreign) })
	if err := (&stage{}).Down(context.Background(), req); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if got := mountsUnder(t, req.Subhost.Home); len(got) != 0 {
		t.Errorf("still mounted: %q", got)
	}
	loops, _ := loopdev.FindByBacking(img)
	if len(loops) != 1 || loops[0].Path != foreign.Path {
		t.Errorf("loop devices of the image after Down: %+v, want only %s", loops, foreign.Path)
	}
}

// hostSafe checks that the guest root at live is nosuid and nodev on the
// host: a setuid program or device node the tenant put there does nothing
// for the host's users.
func hostSafe(t *testing.T, live string) {
	t.Helper()
	var sfs unix.Statfs_t
	if err := unix.Statfs(live, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Flags&unix.ST_NOSUID == 0 || sfs.Flags&unix.ST_NODEV == 0 {
		t.Errorf("%s is mounted with flags %#x, want nosuid and nodev", live, sfs.Flags)
	}
}

// TestBtrfsImage: NAME.img may be btrfs, whose mounts the kernel's mount
// table shows with an anonymous device number, not the loop device's:
// Down still knows mnt's mount as its own and takes everything down.
func TestBtrfsImage(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	dir := scratch(t)
	home := filepath.Join(dir, "bt")
	src := filepath.Join(dir, "bt-src")
	write(t, filepath.Join(src, "root", "hello"), "from the image\n")
	mkdir(t, filepath.Join(src, "work"))
	mkdir(t, home)
	img := filepath.Join(home, "bt.img")
	testguest.BtrfsImage(t, src, img)
	mkdir(t, filepath.Join(home, "live"))
	mkdir(t, filepath.Join(home, "mnt"))
	req := request("bt", home, "")
	downAtEnd(t, req)
	up(t, req)
	if got := read(t, filepath.Join(home, "live", "hello")); got != "from the image\n" {
		t.Errorf("live/hello is %q", got)
	}
	down(t, req)
	if got := mountsUnder(t, home); len(got) != 0 {
		t.Errorf("still mounted: %q", got)
	}
	if loops, _ := loopdev.FindByBacking(img); len(loops) != 0 {
		t.Errorf("loop devices left: %+v", loops)
	}
}
