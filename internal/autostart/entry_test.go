package autostart

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/sdk"
)

func TestEnableGetDisableRoundTrip(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "autostart"))
	want := Entry{Name: "web1", Pipeline: "control", Home: "/srv/sub/web1", Order: 20, Group: "web", Delay: 1500 * time.Millisecond}
	if err := d.Enable(want); err != nil {
		t.Fatal(err)
	}
	got, err := d.Get("web1")
	if err != nil || got != want {
		t.Fatalf("Get = %+v, %v; want %+v", got, err, want)
	}
	// Enabling again replaces, atomically: no temporary file is left.
	want.Order = 5
	if err := d.Enable(want); err != nil {
		t.Fatal(err)
	}
	names, _ := os.ReadDir(string(d))
	if len(names) != 1 || names[0].Name() != "web1" {
		t.Errorf("autostart dir holds %v, want only web1", names)
	}
	if got, _ := d.Get("web1"); got.Order != 5 {
		t.Errorf("order after re-enable = %d, want 5", got.Order)
	}
	if err := d.Disable("web1"); err != nil {
		t.Fatal(err)
	}
	if err := d.Disable("web1"); err != ErrNotEnrolled {
		t.Errorf("second Disable = %v, want ErrNotEnrolled", err)
	}
	if _, err := d.Get("web1"); err != ErrNotEnrolled {
		t.Errorf("Get after Disable = %v, want ErrNotEnrolled", err)
	}
}

func TestEnableRefusesBadEntries(t *testing.T) {
	d := Dir(t.TempDir())
	for _, e := range []Entry{
		{Name: "../x"},
		{Name: "a", Home: "relative/home"},
		{Name: "a", Order: MaxOrder + 1},
		{Name: "a", Group: "-g"},
		{Name: "a", Delay: -time.Second},
		{Name: "a", Pipeline: "a b"},
	} {
		if err := d.Enable(e); !sdk.IsKind(err, sdk.KindInvalidConfig) {
			t.Errorf("Enable(%+v) = %v, want an invalid-config error", e, err)
		}
	}
	if names, _ := os.ReadDir(string(d)); len(names) != 0 {
		t.Errorf("a refused Enable left %v", names)
	}
}

// A bad file is one line naming the file, the line and what is wrong; it
// is left out of List and the good ones still come, sorted by order.
func TestListSortsAndReportsBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("c", "order=30\n")
	write("a", "# comment\n\norder=20\ngroup=g1\n")
	write("b", "order=10\n")
	write("b2", "order=10\n")
	write("bad1", "order=ten\n")
	write("bad2", "colour=blue\n")
	write("bad3", "order=1\norder=2\n")
	write("bad4", "just words\n")
	write(".hidden", "garbage")
	write("a.dpkg-old", "garbage")
	write("a~", "garbage")
	entries, errs := Dir(dir).List()
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	if got := strings.Join(names, " "); got != "b b2 a c" {
		t.Errorf("List order %q, want %q", got, "b b2 a c")
	}
	if len(errs) != 4 {
		t.Fatalf("List errors %v, want 4 (one per bad file)", errs)
	}
	for i, want := range []string{"bad1:1: order", "bad2:1: unknown key \"colour\"", "bad3:2: order is set twice", "bad4:1: want key=value"} {
		msg := errs[i].Error()
		if !strings.Contains(msg, want) || strings.Contains(msg, "\n") || !sdk.IsKind(errs[i], sdk.KindInvalidConfig) {
			t.Errorf("error %d = %q, want one invalid-config line containing %q", i, msg, want)
		}
	}
}

// An enrolment disabled while List reads the directory is left out, not
// an error (three hosts of a fleet sharing one etc directory, say); a
// dangling symlink is still one.
func TestListWhileDisabling(t *testing.T) {
	d := Dir(t.TempDir())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			d.Enable(Entry{Name: "flip", Order: 20})
			d.Disable("flip")
		}
	}()
	d.Enable(Entry{Name: "stays", Order: 10})
	for range 3000 {
		entries, errs := d.List()
		if len(errs) > 0 || len(entries) == 0 || entries[0].Name != "stays" {
			t.Errorf("List while another is disabled: %v, errors %v", entries, errs)
			break
		}
	}
	close(stop)
	<-done
	os.Symlink(filepath.Join(string(d), "nowhere"), filepath.Join(string(d), "dangling"))
	if _, errs := d.List(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "dangling") {
		t.Errorf("a dangling enrolment: errors %v, want one naming it", errs)
	}
}

func TestIsGroupName(t *testing.T) {
	long := strings.Repeat("a", 64)
	for s, want := range map[string]bool{
		"web": true, "a": true, "0db": true, "a.b_c-d": true, long: true,
		"": false, long + "a": false, ".x": false, "_x": false, "-x": false, "a b": false, "a/b": false, "é": false,
	} {
		if got := isGroupName(s); got != want {
			t.Errorf("isGroupName(%q) = %v, want %v", s, got, want)
		}
	}
}

// Get of a name whose enrolment is a dangling symlink says so, as List
// does, not that it is not enrolled (run --supervise would then boot with
// the defaults).
func TestGetDanglingEnrolment(t *testing.T) {
	d := Dir(t.TempDir())
	os.Symlink(filepath.Join(string(d), "nowhere"), filepath.Join(string(d), "dangling"))
	if _, err := d.Get("dangling"); err == nil || errors.Is(err, ErrNotEnrolled) || !strings.Contains(err.Error(), "dangling") {
		t.Errorf("Get of a dangling enrolment: %v, want an error naming it", err)
	}
	if _, err := d.Get("absent"); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("Get of no enrolment: %v, want ErrNotEnrolled", err)
	}
}
