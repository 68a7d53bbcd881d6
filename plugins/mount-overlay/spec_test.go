package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/subhost/subhost/internal/mountinfo"
	"github.com/subhost/subhost/sdk"
)

func TestParseSpec(t *testing.T) {
	sub := func(home string, base ...string) sdk.Subhost {
		s := sdk.Subhost{Name: "x", Home: home, ConfigFile: "/h/x/config"}
		if base != nil {
			s.Vars = map[string]sdk.Var{"BASE": {Words: base, Origin: "/h/x/config:3"}}
		}
		return s
	}
	sp, err := parseSpec(sub("/h/x/", "/b1:/b2/"))
	if err != nil {
		t.Fatal(err)
	}
	if sp.home != "/h/x" || !slices.Equal(sp.bases, []string{"/b1", "/b2"}) {
		t.Errorf("got home %q bases %q", sp.home, sp.bases)
	}
	if sp, err := parseSpec(sub("/h/x", "")); err != nil || len(sp.bases) != 0 {
		t.Errorf("empty BASE: %v %q", err, sp.bases)
	}
	for _, c := range []struct {
		name string
		sub  sdk.Subhost
		want string
	}{
		{"relative home", sub("h/x"), `home "h/x": not an absolute path`},
		{"comma in home", sub("/h/a,b"), `home "/h/a,b": contains ","`},
		{"colon in home", sub("/h/a:b"), `home "/h/a:b": contains ":"`},
		{"equals in home", sub("/h/a=b"), `home "/h/a=b": contains "="`},
		{"space in home", sub("/h/a b"), `home "/h/a b": contains " "`},
		{"relative base", sub("/h/x", "b"), `config /h/x/config:3: BASE "b": not an absolute path`},
		{"empty element", sub("/h/x", "/a::/b"), `config /h/x/config:3: BASE "/a::/b": empty directory in the list`},
		{"comma in base", sub("/h/x", "/a,b"), `config /h/x/config:3: BASE "/a,b": contains ","`},
		{"tab in base", sub("/h/x", "/a\tb"), `contains "\t"`},
		{"no name", sdk.Subhost{Home: "/h/x"}, `subhost name "": not usable`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseSpec(c.sub)
			if !sdk.IsKind(err, sdk.KindInvalidConfig) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an invalid-config error containing %q", err, c.want)
			}
		})
	}
}

const sampleMountinfo = `27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
42 27 0:39 / /tmp/t rw,relatime shared:2 - tmpfs tmpfs rw
46 42 0:40 / /tmp/t/h/live rw,relatime shared:3 - overlay overlay rw,lowerdir+=/tmp/t/b1,lowerdir+=/tmp/t/b\0542,upperdir=/tmp/t/h/root,workdir=/tmp/t/h/work,redirect_dir=nofollow,uuid=on
47 42 0:39 /h/root /tmp/t/other\040live rw,relatime master:3 - tmpfs tmpfs rw
48 27 0:41 / /old rw - overlay none rw,lowerdir=/l1:/l\:2::/data,upperdir=/u,workdir=/w
49 46 0:42 / /tmp/t/h/live rw - tmpfs tmpfs rw
`

func TestUnsafeOverlay(t *testing.T) {
	ms, _ := mountinfo.Parse(strings.NewReader(sampleMountinfo))
	ov := &ms[2]
	followDefaults := map[string]string{"redirect_dir": "follow", "metacopy": "off", "index": "off"}
	if bad := unsafeOverlay(ov, followDefaults); bad != "" {
		t.Errorf("our overlay counted unsafe: %s", bad)
	}
	// No redirect_dir shown: the default rules.
	old := &ms[4]
	if bad := unsafeOverlay(old, followDefaults); bad != "redirect_dir=follow" {
		t.Errorf("got %q", bad)
	}
	if bad := unsafeOverlay(old, map[string]string{"redirect_dir": "nofollow", "metacopy": "on", "index": "off"}); bad != "metacopy=on" {
		t.Errorf("got %q", bad)
	}
}

func TestDetectFS(t *testing.T) {
	img := make([]byte, 0x10048+8)
	if _, err := detectFS(bytes.NewReader(img)); err == nil {
		t.Error("zeroes detected as a filesystem")
	}
	ext := slices.Clone(img)
	ext[1024+56], ext[1024+57] = 0x53, 0xEF
	if fs, err := detectFS(bytes.NewReader(ext)); fs != "ext4" || err != nil {
		t.Errorf("ext: %q %v", fs, err)
	}
	xfs := slices.Clone(img)
	copy(xfs, "XFSB")
	if fs, _ := detectFS(bytes.NewReader(xfs)); fs != "xfs" {
		t.Errorf("xfs: %q", fs)
	}
	btrfs := slices.Clone(img)
	copy(btrfs[0x10040:], "_BHRfS_M")
	if fs, _ := detectFS(bytes.NewReader(btrfs)); fs != "btrfs" {
		t.Errorf("btrfs: %q", fs)
	}
	if _, err := detectFS(bytes.NewReader(nil)); err == nil {
		t.Error("an empty file detected as a filesystem")
	}
}

// TestDetectFSRefuses: filesystems a pretend-boot root may be, but the
// image of a control subhost may not.
func TestDetectFSRefuses(t *testing.T) {
	f2fs := make([]byte, 4096)
	copy(f2fs[1024:], []byte{0x10, 0x20, 0xF5, 0xF2})
	fat := make([]byte, 512)
	fat[0], fat[2], fat[11], fat[12], fat[510], fat[511] = 0xEB, 0x90, 0x00, 0x02, 0x55, 0xAA
	copy(fat[82:], "FAT32   ")
	for name, img := range map[string][]byte{"f2fs": f2fs, "vfat": fat} {
		if fs, err := detectFS(bytes.NewReader(img)); err == nil || fs != "" {
			t.Errorf("%s: accepted as %q", name, fs)
		}
	}
}

func TestCommonDir(t *testing.T) {
	for _, c := range []struct{ a, b, want string }{
		{"/opt/subhost/x/root", "/opt/subhost/x/work", "/opt/subhost/x"},
		{"/srv/a/root", "/srv/b/work", "/srv"},
		{"/a/root", "/b/work", "/"},
		{"/opt/sub/x/rootx", "/opt/sub/x/root", "/opt/sub/x"},
		{"/m/root", "/m/root/work", "/m/root"},
	} {
		if got := commonDir(c.a, c.b); got != c.want {
			t.Errorf("commonDir(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}
