package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/subhost/subhost/sdk"
)

func mountsSubhost(mounts ...string) *sdk.Subhost {
	return &sdk.Subhost{Name: "web1", ConfigFile: "/opt/sub/web1/config", Vars: map[string]sdk.Var{
		"DISKS":  {Words: []string{"vda:1:/d/root.raw", "vdb:1:/d/data.raw", "vdc:0:/d/bare.raw"}, IsArray: true},
		"MOUNTS": {Words: mounts, IsArray: true, Origin: "/opt/sub/web1/config:4"},
	}}
}

func TestParseMounts(t *testing.T) {
	got, err := parseMounts(mountsSubhost("vdb1:/srv/data", "vdc:/srv/ro:ro"))
	if err != nil {
		t.Fatal(err)
	}
	want := []dataMount{
		{Elem: "vdb1:/srv/data", Dev: "vdb1", Path: "/srv/data"},
		{Elem: "vdc:/srv/ro:ro", Dev: "vdc", Path: "/srv/ro", ReadOnly: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if got, err := parseMounts(mountsSubhost()); err != nil || got != nil {
		t.Errorf("no MOUNTS: %+v, %v", got, err)
	}
}

func TestParseMountsRefusesEachBadElement(t *testing.T) {
	for _, bad := range []string{
		"vdb1", "vdb1:/srv:rw", "vdb1:/srv:ro:x", "vdx1:/srv", "vda1:/srv", "vdb:/srv", "vdc0:/srv",
		"vdb1:srv", "vdb1:/srv/../etc", "vdb1:/srv/", "vdb1:/", "vdb1:/proc", "vdb1:/sys/x", "vdb1:/dev", "vdb1:/run", "vdb1:/run/x",
	} {
		_, err := parseMounts(mountsSubhost(bad))
		if !sdk.IsKind(err, sdk.KindInvalidConfig) {
			t.Errorf("%q: got %v, want invalid config", bad, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "config:4") || !strings.Contains(msg, bad) || strings.Count(msg, "\n") != 0 {
			t.Errorf("%q: message %q: want one line naming the place and the element", bad, msg)
		}
	}
	_, err := parseMounts(mountsSubhost("vdb1:/a", "vdc:/a"))
	if err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a path mounted twice: %v", err)
	}
	_, err = parseMounts(mountsSubhost("x:/a", "vdb1:/proc"))
	if err == nil || strings.Count(err.Error(), "\n") != 1 {
		t.Errorf("two bad elements: want two lines, got %v", err)
	}
}
