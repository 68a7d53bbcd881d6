package main

import (
	"strings"
	"testing"

	"github.com/subhost/subhost/sdk"
)

// request builds a request for subhost name whose config at /x/config
// sets BRIDGES on line 2 and any extra variables on line 3.
func request(name string, bridges []string, extra map[string]string) *sdk.Request {
	vars := map[string]sdk.Var{}
	if bridges != nil {
		vars["BRIDGES"] = sdk.Var{Words: bridges, IsArray: true, Origin: "/x/config:2"}
	}
	for k, v := range extra {
		vars[k] = sdk.Var{Words: []string{v}, Origin: "/x/config:3"}
	}
	return &sdk.Request{
		Stage:   "net-veth",
		Subhost: sdk.Subhost{Name: name, Home: "/x", ConfigFile: "/x/config", Vars: vars},
	}
}

func TestParseMAC(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "06:a7:dd:b4:02:f2", want: "06:a7:dd:b4:02:f2"},
		{in: "06:A7:DD:B4:02:F2", want: "06:a7:dd:b4:02:f2"},
		{in: "07:a7:dd:b4:02:f2", err: "MAC 07:a7:dd:b4:02:f2 is multicast"},
		{in: "ff:ff:ff:ff:ff:ff", err: "is multicast"},
		{in: "00:00:00:00:00:00", err: "all zeros"},
		{in: "06:a7:dd:b4:02", err: "has 5 octets, want six"},
		{in: "06:a7:dd:b4:02:f2:00", err: "has 7 octets"},
		{in: "06:a7:dd:b4:02:g2", err: `octet 6 "g2" is not two hex digits`},
		{in: "6:a7:dd:b4:02:f2", err: `octet 1 "6"`},
		{in: "06-a7-dd-b4-02-f2", err: "has 1 octets"},
		{in: "", err: "has 1 octets"},
	} {
		mac, err := parseMAC(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("parseMAC(%q): %v", tc.in, err)
		case tc.err == "" && mac.String() != tc.want:
			t.Errorf("parseMAC(%q) = %s, want %s", tc.in, mac, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseMAC(%q) error = %v, want one containing %q", tc.in, err, tc.err)
		}
	}
}

func TestParsePlan(t *testing.T) {
	p, errs := parseSpec(request("web", []string{"br0:06:a7:dd:b4:02:f2", "lan:06:a7:dd:b4:02:f3"}, nil))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if p.netns != "/run/netns/web" {
		t.Errorf("netns %q", p.netns)
	}
	want := []sdk.Interface{
		{HostName: "web0", GuestName: "eth0", MAC: "06:a7:dd:b4:02:f2", Bridge: "br0"},
		{HostName: "web1", GuestName: "eth1", MAC: "06:a7:dd:b4:02:f3", Bridge: "lan"},
	}
	got := p.record().Interfaces
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("interfaces %+v, want %+v", got, want)
	}

	p, errs = parseSpec(request("a-very-long-name", []string{"br0:06:a7:dd:b4:02:f2"}, map[string]string{"HOSTIF_PREFIX": "sh"}))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if p.cables[0].host != "sh0" {
		t.Errorf("host name %q with HOSTIF_PREFIX=sh", p.cables[0].host)
	}

	p, errs = parseSpec(request("iso", nil, nil))
	if len(errs) > 0 || len(p.cables) != 0 || p.record().Netns != "/run/netns/iso" {
		t.Errorf("no BRIDGES: %+v %v", p, errs)
	}
}

// TestParsePlanBad checks every config problem that needs no host: one
// line each, naming the file, the element and what is wrong.
func TestParsePlanBad(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bridges []string
		extra   map[string]string
		want    []string
	}{
		{"web", []string{"br0:07:a7:dd:b4:02:f2"}, nil,
			[]string{`config /x/config:2: BRIDGES[0] "br0:07:a7:dd:b4:02:f2": MAC 07:a7:dd:b4:02:f2 is multicast`}},
		{"web", []string{"br0:06:a7:dd:b4:02"}, nil,
			[]string{`config /x/config:2: BRIDGES[0] "br0:06:a7:dd:b4:02": MAC "06:a7:dd:b4:02" has 5 octets, want six`}},
		{"web", []string{"br0"}, nil,
			[]string{`BRIDGES[0] "br0": want bridge:MAC`}},
		{"web", []string{":06:a7:dd:b4:02:f2"}, nil,
			[]string{`BRIDGES[0] ":06:a7:dd:b4:02:f2": bridge name "": empty`}},
		{"web", []string{"br0:06:a7:dd:b4:02:f2", "br1:06:A7:DD:B4:02:F2"}, nil,
			[]string{`BRIDGES[1] "br1:06:A7:DD:B4:02:F2": MAC 06:a7:dd:b4:02:f2 is also given in BRIDGES[0]`}},
		{"averylongname15", []string{"br0:06:a7:dd:b4:02:f2"}, nil,
			[]string{`host interface name "averylongname150" is 16 characters, the kernel allows 15: use a shorter subhost name or set HOSTIF_PREFIX`}},
		{"web", []string{"br0:06:a7:dd:b4:02:f2"}, map[string]string{"HOSTIF_PREFIX": "a/b"},
			[]string{`config /x/config:3: HOSTIF_PREFIX "a/b": interface names cannot contain '/'`}},
		{"web", []string{"br0:06:a7:dd:b4:02:f2"}, map[string]string{"HOSTIF_PREFIX": ""},
			[]string{`HOSTIF_PREFIX is empty`}},
		{"web", []string{"br0:06:a7:dd:b4:02:f2"}, map[string]string{"HOSTIF_PREFIX": "abcdefghijklmno"},
			[]string{`HOSTIF_PREFIX "abcdefghijklmno" is 15 characters`}},
		{"we:b", []string{"br0:06:a7:dd:b4:02:f2"}, nil,
			[]string{`host interface name "we:b0" (from the subhost name): interface names cannot contain ':': set HOSTIF_PREFIX`}},
		{"a/b", nil, nil,
			[]string{`subhost name "a/b" cannot name a network namespace`}},
		{"web", []string{"br0:00:00:00:00:00:00", "bad name:06:a7:dd:b4:02:f2"}, nil,
			[]string{`BRIDGES[0] "br0:00:00:00:00:00:00": MAC 00:00:00:00:00:00 is all zeros`,
				`BRIDGES[1] "bad name:06:a7:dd:b4:02:f2": bridge name "bad name": interface names cannot contain ' '`}},
	} {
		_, errs := parseSpec(request(tc.name, tc.bridges, tc.extra))
		if len(errs) != len(tc.want) {
			t.Errorf("%s %q %v: got %d problems %v, want %d", tc.name, tc.bridges, tc.extra, len(errs), errs, len(tc.want))
			continue
		}
		for i, err := range errs {
			if !sdk.IsKind(err, sdk.KindInvalidConfig) || !strings.Contains(err.Error(), tc.want[i]) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s %q %v: problem %d = %v (%s), want one line containing %q", tc.name, tc.bridges, tc.extra, i, err, sdk.KindOf(err), tc.want[i])
			}
		}
	}
}
