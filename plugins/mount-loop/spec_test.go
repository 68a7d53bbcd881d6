package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subhost/subhost/sdk"
)

// request builds a request for subhost name with home and DISKS as if set
// on line 2 of HOME/config.
func request(name, home string, disks ...string) *sdk.Request {
	req := &sdk.Request{
		Stage: "mount-loop",
		Subhost: sdk.Subhost{
			Name:       name,
			Home:       home,
			ConfigFile: filepath.Join(home, "config"),
			Vars:       map[string]sdk.Var{},
		},
	}
	if disks != nil {
		req.Subhost.Vars["DISKS"] = sdk.Var{Words: disks, IsArray: true, Origin: filepath.Join(home, "config") + ":2"}
	}
	return req
}

func TestParseSpec(t *testing.T) {
	sp, err := parseSpec(request("web", "/opt/sub/web/", "vda:1:/d/a.raw", "vdb:0:/d/b:c.raw", "sdc:12:/d/c.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if sp.Live != "/opt/sub/web/live" || sp.Tag != "subhost:web" || sp.Where != "config /opt/sub/web/config:2" || len(sp.Disks) != 3 {
		t.Fatalf("spec %+v", sp)
	}
	d := sp.Disks[1]
	if d.Dev != "vdb" || d.Part != 0 || d.Image != "/d/b:c.raw" || d.PartNode() != "" || sp.Disks[2].PartNode() != "sdc12" {
		t.Errorf("disks %+v", sp.Disks)
	}
}

func TestParseSpecBad(t *testing.T) {
	const where = `config /h/config:2: `
	tests := []struct {
		disks []string
		want  string
	}{
		{nil, "config /h/config: DISKS is not set"},
		{[]string{}, "DISKS is not set"},
		{[]string{"vda:1"}, where + `DISKS[0] "vda:1": want dev:part:image (three fields separated by ":"), got 2 field(s)`},
		{[]string{"vda"}, `got 1 field(s)`},
		{[]string{"vda:1:/a", "vdb:x:/d.raw"}, where + `DISKS[1] "vdb:x:/d.raw": partition "x" is not a non-negative integer`},
		{[]string{"vda:-1:/a"}, `partition "-1" is not a non-negative integer`},
		{[]string{"vda::/a"}, `partition "" is not a non-negative integer`},
		{[]string{"vda:+1:/a"}, `partition "+1" is not a non-negative integer`},
		{[]string{"vda: 1:/a"}, `partition " 1" is not a non-negative integer`},
		{[]string{"vda:99999999999999999999:/a"}, `partition "99999999999999999999" is out of range`},
		{[]string{":1:/a"}, `device name is empty`},
		{[]string{"Vda:1:/a"}, `device name "Vda" must start with a lower-case letter`},
		{[]string{"1da:1:/a"}, `must start with a lower-case letter`},
		{[]string{"v-a:1:/a"}, `device name "v-a": only lower-case letters and digits`},
		{[]string{"../sda:1:/a"}, `must start with a lower-case letter`},
		{[]string{"vd/a:1:/a"}, `only lower-case letters and digits`},
		{[]string{strings.Repeat("v", 25) + ":1:/a"}, `is too long`},
		{[]string{"tty1:0:/a"}, `looks like a terminal`},
		{[]string{"vda:1:"}, `image path is empty`},
		{[]string{"vda:1:d.raw"}, `image "d.raw" is not an absolute path`},
		{[]string{"vda:1:/a", "vda:2:/b"}, where + `DISKS[1] "vda:2:/b": /dev/vda is already the disk of DISKS[0] "vda:1:/a"`},
		{[]string{"vda:1:/a", "vda1:0:/b"}, `DISKS[1] "vda1:0:/b": /dev/vda1 is already the partition node of DISKS[0] "vda:1:/a"`},
		{[]string{"vda1:0:/b", "vda:1:/a"}, `DISKS[1] "vda:1:/a": partition node /dev/vda1 is already the disk of DISKS[0] "vda1:0:/b"`},
		{[]string{"sda:11:/a", "sda1:1:/b"}, `partition node /dev/sda11 is already the partition node of DISKS[0] "sda:11:/a"`},
	}
	for _, name := range []string{"null", "console", "pts", "kmsg", "initctl", "log", "core"} {
		tests = append(tests, struct {
			disks []string
			want  string
		}{[]string{name + ":0:/a"}, `device name "` + name + `" is reserved`})
	}
	for _, tc := range tests {
		_, err := parseSpec(request("x", "/h", tc.disks...))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !sdk.IsKind(err, sdk.KindInvalidConfig) {
			t.Errorf("DISKS=%q:\n  got  %v\n  want %q", tc.disks, err, tc.want)
		}
	}
	// Every bad element is reported, each on its own line.
	_, err := parseSpec(request("x", "/h", "vda:x:/a", "null:0:/b", "vdc:1:rel"))
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Errorf("three bad elements gave %d lines:\n%v", n, err)
	}
	// From the environment.
	req := request("x", "/h", "vda:x:/a")
	v := req.Subhost.Vars["DISKS"]
	v.Origin = "environment"
	req.Subhost.Vars["DISKS"] = v
	if _, err := parseSpec(req); err == nil || !strings.HasPrefix(err.Error(), `environment: DISKS[0] "vda:x:/a"`) {
		t.Errorf("from the environment: %v", err)
	}
	for _, bad := range []*sdk.Request{request("", "/h", "vda:1:/a"), request("x", "rel", "vda:1:/a"), request("x", "", "vda:1:/a"), request(strings.Repeat("n", 60), "/h", "vda:1:/a")} {
		if _, err := parseSpec(bad); !sdk.IsKind(err, sdk.KindInvalidConfig) {
			t.Errorf("subhost %q home %q: %v", bad.Subhost.Name, bad.Subhost.Home, err)
		}
	}
}

// writeMBR makes a sparse image of size bytes with raw MBR entries
// {type, first sector, sectors}, no filesystem.
func writeMBR(t *testing.T, size int64, entries ...[3]uint32) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "raw.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		return path
	}
	mbr := make([]byte, 512)
	for i, e := range entries {
		b := mbr[446+16*i:]
		b[4] = byte(e[0])
		putLE32(b[8:], e[1])
		putLE32(b[12:], e[2])
	}
	mbr[510], mbr[511] = 0x55, 0xAA
	if _, err := f.WriteAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	return path
}

func putLE32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
