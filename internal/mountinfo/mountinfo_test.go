package mountinfo

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		name, line string
		want       Entry
	}{
		{
			name: "master peer, superblock options",
			line: `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`,
			want: Entry{ID: 36, Parent: 35, Major: 98, Root: "/mnt1", Mountpoint: "/mnt2", FSType: "ext3", Source: "/dev/root", Super: "rw,errors=continue", Optional: []string{"master:1"}},
		},
		{
			name: "no optional fields",
			line: `37 36 7:3 / /opt/sub/x/live rw,nodev - ext4 /dev/loop3 rw`,
			want: Entry{ID: 37, Parent: 36, Major: 7, Minor: 3, Root: "/", Mountpoint: "/opt/sub/x/live", FSType: "ext4", Source: "/dev/loop3", Super: "rw", Optional: []string{}},
		},
		{
			name: "several optional fields",
			line: `90 1 0:51 / /srv rw shared:4 master:2 propagate_from:2 unbindable - tmpfs tmpfs rw,size=1024k`,
			want: Entry{ID: 90, Parent: 1, Minor: 51, Root: "/", Mountpoint: "/srv", FSType: "tmpfs", Source: "tmpfs", Super: "rw,size=1024k", Optional: []string{"shared:4", "master:2", "propagate_from:2", "unbindable"}},
		},
		{
			name: "escaped space, tab, newline and backslash",
			line: `91 90 0:52 /h\040root /srv/a\040b\011c\012d\134e rw - tmpfs my\040tmpfs rw`,
			want: Entry{ID: 91, Parent: 90, Minor: 52, Root: "/h root", Mountpoint: "/srv/a b\tc\nd\\e", FSType: "tmpfs", Source: "my tmpfs", Super: "rw", Optional: []string{}},
		},
		{
			name: "a backslash not followed by three octal digits stays",
			line: `92 90 0:53 / /srv/x\09y\04 rw - tmpfs tmpfs rw`,
			want: Entry{ID: 92, Parent: 90, Minor: 53, Root: "/", Mountpoint: `/srv/x\09y\04`, FSType: "tmpfs", Source: "tmpfs", Super: "rw", Optional: []string{}},
		},
		{
			// mount -t tmpfs "" /x: the kernel writes the empty source
			// between two spaces.
			name: "empty source",
			line: `100 1 0:50 / /x rw - tmpfs  rw,size=4k`,
			want: Entry{ID: 100, Parent: 1, Minor: 50, Root: "/", Mountpoint: "/x", FSType: "tmpfs", Source: "", Super: "rw,size=4k", Optional: []string{}},
		},
		{
			name: "empty source, optional fields",
			line: `101 1 0:51 / /y rw,nosuid shared:7 - tmpfs  rw,size=4k,mode=700`,
			want: Entry{ID: 101, Parent: 1, Minor: 51, Root: "/", Mountpoint: "/y", FSType: "tmpfs", Source: "", Super: "rw,size=4k,mode=700", Optional: []string{"shared:7"}},
		},
		{
			name: "no superblock options",
			line: `93 90 259:1 / /boot rw - vfat /dev/nvme0n1p1`,
			want: Entry{ID: 93, Parent: 90, Major: 259, Minor: 1, Root: "/", Mountpoint: "/boot", FSType: "vfat", Source: "/dev/nvme0n1p1", Optional: []string{}},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(c.line + "\n"))
			if err != nil || len(got) != 1 {
				t.Fatalf("Parse: %+v, %v", got, err)
			}
			if !reflect.DeepEqual(got[0], c.want) {
				t.Errorf("got  %+v\nwant %+v", got[0], c.want)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	good := "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
	for _, bad := range []string{
		"garbage",
		"",
		"1 0 8:1 / / rw ext4 /dev/sda1 rw",     // no separator
		"1 0 8:1 / / rw - ext4",                // no source
		"x 0 8:1 / / rw - ext4 /dev/sda1 rw",   // ID
		"1 y 8:1 / / rw - ext4 /dev/sda1 rw",   // parent
		"1 0 8 / / rw - ext4 /dev/sda1 rw",     // device number
		"1 0 8:z / / rw - ext4 /dev/sda1 rw",   // minor
		"1 0 -8:1 / / rw - ext4 /dev/sda1 rw",  // major
		"1 0 8:1 / - rw ext4 /dev/sda1 rw",     // "-" before the options
		"1 0 8:1:2 / / rw - ext4 /dev/sda1 rw", // minor "1:2"
		"1 0 8:1  / rw - ext4 /dev/sda1 rw",    // an empty root
		"1 0 8:1 / / rw -  /dev/sda1 rw",       // an empty type
	} {
		// Good lines around it do not hide it.
		ms, err := Parse(strings.NewReader(good + bad + "\n" + good))
		if err == nil || !strings.Contains(err.Error(), "malformed line") {
			t.Errorf("%q: parsed as %+v, %v", bad, ms, err)
		}
	}
	if ms, err := Parse(strings.NewReader("")); err != nil || len(ms) != 0 {
		t.Errorf("empty table: %+v, %v", ms, err)
	}
}

func TestRead(t *testing.T) {
	ms, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if TopAt(ms, "/") == nil {
		t.Error("no mount on / in the own mount table")
	}
	if pid1, err := Read("/proc/1/mountinfo"); err != nil || TopAt(pid1, "/") == nil {
		t.Errorf("PID 1's mount table: %v", err)
	}
	if _, err := Read("/nonexistent/mountinfo"); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}

func TestGroups(t *testing.T) {
	for _, c := range []struct {
		optional       []string
		shared, master string
	}{
		{nil, "", ""},
		{[]string{"shared:3"}, "3", ""},
		{[]string{"master:12"}, "", "12"},
		{[]string{"shared:4", "master:2", "propagate_from:2"}, "4", "2"},
		{[]string{"unbindable"}, "", ""},
	} {
		e := Entry{Optional: c.optional}
		if e.SharedGroup() != c.shared || e.MasterGroup() != c.master {
			t.Errorf("%q: shared %q master %q, want %q %q", c.optional, e.SharedGroup(), e.MasterGroup(), c.shared, c.master)
		}
	}
}

func TestOverlayLayers(t *testing.T) {
	for _, c := range []struct {
		name, super string
		lowers      []string
		upper, work string
	}{
		{
			name:   "layers one by one, escaped comma",
			super:  `rw,lowerdir+=/b1,lowerdir+=/b\0542,upperdir=/h/root,workdir=/h/work,redirect_dir=nofollow,uuid=on`,
			lowers: []string{"/b1", "/b,2"}, upper: "/h/root", work: "/h/work",
		},
		{
			name:   "legacy list, escaped colon, data-only layers",
			super:  `rw,lowerdir=/l1:/l\:2::/data,upperdir=/u,workdir=/w`,
			lowers: []string{"/l1", "/l:2", "/data"}, upper: "/u", work: "/w",
		},
		{
			name:   "read-only overlay",
			super:  `ro,lowerdir=/a:/b`,
			lowers: []string{"/a", "/b"},
		},
		{
			name:   "escaped space in a layer",
			super:  `rw,lowerdir+=/base\040one,upperdir=/u\040p,workdir=/w`,
			lowers: []string{"/base one"}, upper: "/u p", work: "/w",
		},
		{name: "not an overlay", super: "rw,size=1024k"},
		{name: "empty", super: ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			lowers, upper, work := Entry{Super: c.super}.OverlayLayers()
			if !slices.Equal(lowers, c.lowers) || upper != c.upper || work != c.work {
				t.Errorf("got lower %q upper %q work %q", lowers, upper, work)
			}
		})
	}
}

func TestOption(t *testing.T) {
	e := Entry{Super: `rw,redirect_dir=follow,index=off,redirect_dir=nofollow,uuid=on,lowerdir+=/a\054b,xino`}
	for _, c := range []struct {
		key, want string
		ok        bool
	}{
		{"redirect_dir", "nofollow", true}, // the last one counts
		{"index", "off", true},
		{"lowerdir+", "/a,b", true},
		{"xino", "", true},
		{"rw", "", true},
		{"metacopy", "", false},
	} {
		if v, ok := e.Option(c.key); v != c.want || ok != c.ok {
			t.Errorf("Option(%q) = %q, %v; want %q, %v", c.key, v, ok, c.want, c.ok)
		}
	}
}

// table builds mount entries from "ID PARENT MOUNTPOINT MAJOR:MINOR".
func table(t *testing.T, rows ...string) []Entry {
	t.Helper()
	var b strings.Builder
	for _, r := range rows {
		f := strings.Fields(r)
		fmt.Fprintf(&b, "%s %s %s / %s rw - tmpfs t%s rw\n", f[0], f[1], f[3], f[2], f[0])
	}
	ms, err := Parse(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestTopAt(t *testing.T) {
	for _, c := range []struct {
		name string
		rows []string
		at   string
		want int // mount ID, 0 for none
	}{
		{"one mount", []string{"1 0 / 8:1", "20 1 /x/live 0:40"}, "/x/live", 20},
		{"stacked: the last on top", []string{"1 0 / 8:1", "20 1 /x/live 0:40", "21 20 /x/live 0:41", "22 21 /x/live 7:3"}, "/x/live", 22},
		{"nothing there", []string{"1 0 / 8:1", "20 1 /x/live 0:40"}, "/x/other", 0},
		{"a mount below is not at", []string{"1 0 / 8:1", "20 1 /x/live/proc 0:40"}, "/x/live", 0},
		// Mounted beneath the one on top (MOVE_MOUNT_BENEATH): listed
		// later, but covered.
		{"mounted beneath", []string{"1 0 / 8:1", "20 30 /x/live 0:40", "30 1 /x/live 0:41"}, "/x/live", 20},
		// /x/live mounted, then /x covered and /x/live mounted again on
		// the new /x: the old one is hidden, the new one visible.
		{"hidden by a mount on its parent", []string{"1 0 / 8:1", "10 1 /x 0:30", "20 10 /x/live 0:40", "11 10 /x 0:31", "21 11 /x/live 0:41"}, "/x/live", 21},
		// Two on one parent, as a table can show them: the later.
		{"same parent: the later", []string{"36 35 /x/live 98:0", "37 36 /x/live 7:3", "38 36 /x/live 7:4"}, "/x/live", 38},
		{"the root", []string{"1 0 / 8:1", "2 1 / 0:2"}, "/", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			top := TopAt(table(t, c.rows...), c.at)
			switch {
			case c.want == 0 && top != nil:
				t.Errorf("got %+v, want nothing", top)
			case c.want != 0 && (top == nil || top.ID != c.want):
				t.Errorf("got %+v, want mount %d", top, c.want)
			}
		})
	}
}

func TestLookups(t *testing.T) {
	ms := table(t, "1 0 / 8:1", "20 1 /a 7:3", "21 1 /b 7:3", "22 1 /c 7:4", "23 1 /d 7:259")
	if got := Mountpoints(ms, 7, 3); !slices.Equal(got, []string{"/a", "/b"}) {
		t.Errorf("Mountpoints 7:3: %q", got)
	}
	if got := Mountpoints(ms, 7, 259); !slices.Equal(got, []string{"/d"}) {
		t.Errorf("Mountpoints 7:259: %q", got)
	}
	if got := Mountpoints(ms, 7, 5); got != nil {
		t.Errorf("Mountpoints 7:5: %q", got)
	}
	if m := ByID(ms, 22); m == nil || m.Mountpoint != "/c" {
		t.Errorf("ByID 22: %+v", m)
	}
	if m := ByID(ms, 99); m != nil {
		t.Errorf("ByID 99: %+v", m)
	}
	// Lookups point into the table, not at copies.
	if TopAt(ms, "/c") != ByID(ms, 22) || ByID(ms, 22) != &ms[3] {
		t.Error("TopAt and ByID return copies")
	}
}
