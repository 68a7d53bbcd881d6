package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/solo"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

var ctx = context.Background()

// upOrFail brings req up and downs it when the test ends, whatever
// happens in between.
func upOrFail(t *testing.T, s *stage, req *sdk.Request) *sdk.Result {
	t.Helper()
	t.Cleanup(func() {
		down := *req
		down.State = nil
		if err := s.Down(ctx, &down); err != nil {
			t.Errorf("cleanup Down: %v", err)
		}
	})
	res, err := s.Up(ctx, req)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	return res
}

func TestOneBridge(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	br := th.bridge("br0", 0)
	name := subhostName("a")
	req := request(name, []string{"br0:06:A7:DD:B4:02:F2"}, nil)
	if err := s.Validate(ctx, req); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	res := upOrFail(t, s, req)

	want := sdk.BootRecord{Netns: "/run/netns/" + name, Interfaces: []sdk.Interface{
		{HostName: name + "0", GuestName: "eth0", MAC: "06:a7:dd:b4:02:f2", Bridge: "br0"},
	}}
	if !reflect.DeepEqual(res.Record, want) {
		t.Errorf("record %+v, want %+v", res.Record, want)
	}
	host := th.link(name + "0")
	if host.Type() != "veth" || host.Attrs().MasterIndex != br.Attrs().Index || !isUp(host) {
		t.Errorf("host end %s: type %s, master %d (want %d), up %v", name+"0", host.Type(), host.Attrs().MasterIndex, br.Attrs().Index, isUp(host))
	}
	g := guest(t, name)
	eth0, err := g.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().HardwareAddr.String() != "06:a7:dd:b4:02:f2" || !isUp(eth0) {
		t.Errorf("eth0: MAC %s, up %v", eth0.Attrs().HardwareAddr, isUp(eth0))
	}
	if lo, err := g.LinkByName("lo"); err != nil || !isUp(lo) {
		t.Errorf("lo not up inside: %v", err)
	}
	if links, _ := g.LinkList(); len(links) != 2 {
		t.Errorf("netns holds %d links, want lo and eth0", len(links))
	}
	// iproute2 sees it as one of its own.
	if _, err := exec.LookPath("ip"); err == nil {
		out, err := exec.Command("ip", "-n", name, "link", "show", "eth0").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "06:a7:dd:b4:02:f2") {
			t.Errorf("ip -n %s link show eth0: %v\n%s", name, err, out)
		}
	}
	after := *req
	after.State = res.State
	if err := s.Check(ctx, &after); err != nil {
		t.Errorf("Check: %v", err)
	}
	g.Close() // it holds the namespace (TestDownWhileSomethingHoldsTheNamespace)
	if err := s.Down(ctx, &after); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if netnsExists(name) || th.has(name+"0") {
		t.Errorf("Down left netns (%v) or host end (%v)", netnsExists(name), th.has(name+"0"))
	}
}

// The host end's MAC starts with fe, above any NIC's: a bridge whose
// MAC follows its lowest port keeps its own when subhosts come and go.
func TestHostEndsKeepTheBridgesMAC(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	br := th.bridge("br0", 0)
	// The host's NIC on that network: one end of a veth pair here.
	th.uplink(br, "52:54:00:12:34:56")
	before := th.link("br0").Attrs().HardwareAddr.String()
	name := subhostName("m")
	req := request(name, []string{"br0:06:A7:DD:B4:02:F3", "br0:06:A7:DD:B4:02:F4"}, nil)
	res := upOrFail(t, s, req)
	for _, i := range res.Record.Interfaces {
		if mac := th.link(i.HostName).Attrs().HardwareAddr; mac[0] != 0xfe {
			t.Errorf("host end %s has MAC %s, want fe:...", i.HostName, mac)
		}
	}
	if after := th.link("br0").Attrs().HardwareAddr.String(); after != before {
		t.Errorf("the bridge's MAC went from %s to %s", before, after)
	}
	after := *req
	after.State = res.State
	if err := s.Down(ctx, &after); err != nil {
		t.Fatal(err)
	}
}

func TestThreeBridgesAndPrefix(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	brs := []*netlink.Bridge{th.bridge("lan", 0), th.bridge("dmz", 0), th.bridge("stor", 0)}
	name := subhostName("b")
	macs := []string{"06:a7:dd:b4:02:f2", "06:a7:dd:b4:02:f3", "0a:00:00:00:00:01"}
	req := request(name, []string{"lan:" + macs[0], "dmz:" + macs[1], "stor:" + macs[2]}, map[string]string{"HOSTIF_PREFIX": "vb" + name[2:]})
	res := upOrFail(t, s, req)
	g := guest(t, name)
	for i, br := range brs {
		hostName := "vb" + name[2:] + string(rune('0'+i))
		if got := res.Record.Interfaces[i]; got.HostName != hostName || got.GuestName != "eth"+string(rune('0'+i)) || got.MAC != macs[i] || got.Bridge != br.Name {
			t.Errorf("record interface %d: %+v", i, got)
		}
		host := th.link(hostName)
		if host.Attrs().MasterIndex != br.Attrs().Index || !isUp(host) {
			t.Errorf("%s: not an up port of %s", hostName, br.Name)
		}
		eth, err := g.LinkByName("eth" + string(rune('0'+i)))
		if err != nil || eth.Attrs().HardwareAddr.String() != macs[i] || !isUp(eth) {
			t.Errorf("eth%d: %v %v", i, err, eth)
		}
		if eth != nil && eth.Attrs().ParentIndex != host.Attrs().Index {
			t.Errorf("eth%d is not the peer of %s", i, hostName)
		}
	}
	if th.has(name + "0") {
		t.Errorf("host end named after the subhost despite HOSTIF_PREFIX")
	}
}

func TestMTUFromBridge(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	th.bridge("br0", 1400)
	name := subhostName("m")
	upOrFail(t, s, request(name, []string{"br0:06:00:00:00:00:01"}, nil))
	if mtu := th.link(name + "0").Attrs().MTU; mtu != 1400 {
		t.Errorf("host end MTU %d, want 1400", mtu)
	}
	eth0, err := guest(t, name).LinkByName("eth0")
	if err != nil || eth0.Attrs().MTU != 1400 {
		t.Errorf("eth0 MTU: %v %v", err, eth0)
	}
}

func TestNoBridgesIsolated(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	before := th.linkNames()
	name := subhostName("i")
	res := upOrFail(t, s, request(name, nil, nil))
	if res.Record.Netns != "/run/netns/"+name || len(res.Record.Interfaces) != 0 {
		t.Errorf("record %+v", res.Record)
	}
	links, err := guest(t, name).LinkList()
	if err != nil || len(links) != 1 || links[0].Attrs().Name != "lo" || !isUp(links[0]) {
		t.Errorf("isolated netns links: %v %v", err, links)
	}
	if got := th.linkNames(); !reflect.DeepEqual(got, before) {
		t.Errorf("host links changed: %v -> %v", before, got)
	}
}

// TestNetnsLikeIproute2 checks what `ip netns` relies on: /run/netns a
// shared mount, the subhost's netns a bind mount of an nsfs file there.
func TestNetnsLikeIproute2(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	_, s := newTestHost(t)
	name := subhostName("p")
	upOrFail(t, s, request(name, nil, nil))
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var dirShared, nsMounted bool
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch fields[4] {
		case netnsDir:
			dirShared = dirShared || strings.Contains(sc.Text(), " shared:")
		case netnsDir + "/" + name:
			nsMounted = strings.Contains(sc.Text(), " - nsfs ")
		}
	}
	if !dirShared || !nsMounted {
		t.Errorf("%s shared mount: %v; %s an nsfs mount: %v", netnsDir, dirShared, name, nsMounted)
	}
}

func TestReentryAdopts(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	br := th.bridge("br0", 0)
	name := subhostName("r")
	req := request(name, []string{"br0:06:a7:dd:b4:02:f2"}, nil)
	first := upOrFail(t, s, req)
	index := th.link(name + "0").Attrs().Index

	// A hibernated subhost whose guest took eth0 down and whose bridge
	// port fell out: Up adopts and mends it, without recreating it.
	g := guest(t, name)
	eth0, _ := g.LinkByName("eth0")
	g.LinkSetDown(eth0)
	th.h.LinkSetNoMaster(th.link(name + "0"))
	again := *req
	again.State = first.State
	second, err := s.Up(ctx, &again)
	if err != nil {
		t.Fatalf("Up again: %v", err)
	}
	if !reflect.DeepEqual(first.Record, second.Record) {
		t.Errorf("records differ: %+v vs %+v", first.Record, second.Record)
	}
	host := th.link(name + "0")
	if host.Attrs().Index != index {
		t.Errorf("veth was recreated, not adopted")
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		t.Errorf("adopted veth not back in br0")
	}
	if eth0, _ = g.LinkByName("eth0"); !isUp(eth0) {
		t.Errorf("adopted eth0 not up")
	}
	if err := s.Check(ctx, &again); err != nil {
		t.Errorf("Check: %v", err)
	}

	// The config changed under a hibernated subhost: a conflict, and
	// nothing is touched.
	changed := request(name, []string{"br0:06:a7:dd:b4:02:f9"}, nil)
	_, err = s.Up(ctx, changed)
	if !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), "its peer eth0 has MAC 06:a7:dd:b4:02:f2") {
		t.Errorf("Up with another MAC: %v (%s), want a conflict naming the MAC", err, sdk.KindOf(err))
	}
	th.bridge("br1", 0)
	moved := request(name, []string{"br1:06:a7:dd:b4:02:f2"}, nil)
	if _, err := s.Up(ctx, moved); !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), "a port of another bridge") {
		t.Errorf("Up with another bridge: %v", err)
	}
	if th.link(name+"0").Attrs().Index != index {
		t.Errorf("a refused Up changed the veth")
	}
}

func TestDownFromEmptyState(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	th.bridge("br0", 0)
	th.bridge("br1", 0)
	before := th.linkNames()
	name := subhostName("d")
	req := request(name, []string{"br0:06:00:00:00:00:01", "br1:06:00:00:00:00:02"}, nil)
	if _, err := s.Up(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := s.Down(ctx, req); err != nil { // req.State is nil
		t.Fatalf("Down from empty state: %v", err)
	}
	if netnsExists(name) || !reflect.DeepEqual(th.linkNames(), before) {
		t.Errorf("left netns %v, links %v (before %v)", netnsExists(name), th.linkNames(), before)
	}
	if err := s.Down(ctx, req); err != nil {
		t.Errorf("Down with nothing there: %v", err)
	}

	// A crash between creating /run/netns/NAME and binding the namespace
	// on it leaves an empty file (and the mark Up wrote before): Down
	// removes it, Up refuses it.
	if err := markMade(name); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(netnsDir+"/"+name, nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Up(ctx, req); !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), "is not a network namespace") {
		t.Errorf("Up over an empty netns file: %v", err)
	}
	if err := s.Down(ctx, req); err != nil || netnsExists(name) {
		t.Errorf("Down of an empty netns file: %v, still there: %v", err, netnsExists(name))
	}
}

// TestForeignNetnsIsLeftAlone: a network namespace pinned under the
// subhost's name by someone else (`ip netns add NAME`, the old scripts)
// is neither adopted by Up nor deleted by Down, nor is a veth with its
// peer there.
func TestForeignNetnsIsLeftAlone(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	th.bridge("br0", 0)
	name := subhostName("f")
	path := netnsDir + "/" + name
	if err := createNetns(path); err != nil { // as `ip netns add` pins it
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteNetns(path) })
	theirs := guest(t, name)
	if err := theirs.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "adm0"}, PeerName: "adm1"}); err != nil {
		t.Fatal(err)
	}
	req := request(name, []string{"br0:06:a7:dd:b4:02:f3"}, nil)
	// And a veth of theirs under the name of the subhost's first host
	// end, its peer in their namespace.
	nsFile, err := openNetns(path)
	if err != nil || nsFile == nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer nsFile.Close()
	if err := th.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name + "0"}, PeerName: "adm2", PeerNamespace: netlink.NsFd(nsFile.Fd())}); err != nil {
		t.Fatal(err)
	}
	want := "network namespace " + path + " exists and subhost did not make it for " + name
	if err := s.Validate(ctx, req); !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), want) {
		t.Errorf("Validate: %v, want a conflict %q", err, want)
	}
	if _, err := s.Up(ctx, req); !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), want) {
		t.Errorf("Up: %v, want a conflict %q", err, want)
	}
	if markedMade(name) {
		t.Errorf("a refused Up left its mark")
	}
	if err := s.Down(ctx, req); err != nil {
		t.Errorf("Down: %v", err)
	}
	if !netnsExists(name) {
		t.Fatalf("Down deleted a network namespace the subhost did not make")
	}
	if _, err := theirs.LinkByName("adm0"); err != nil {
		t.Errorf("their interface is gone: %v", err)
	}
	if !th.has(name + "0") {
		t.Errorf("Down deleted their veth %s, whose peer is in their namespace", name+"0")
	}
}

// TestDownSparesOthers: Down finds host ends by name, and deletes only a
// veth whose peer is in the subhost's own namespace.
func TestDownSparesOthers(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	name := subhostName("o")
	th.bridge(name+"0", 0)
	if err := s.Down(ctx, request(name, []string{"br0:06:00:00:00:00:01"}, nil)); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if !th.has(name + "0") {
		t.Errorf("Down deleted an interface that was not the subhost's")
	}
}

func TestCheckReports(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	th.bridge("br0", 0)
	name := subhostName("c")
	req := request(name, []string{"br0:06:00:00:00:00:01", "br0:06:00:00:00:00:02"}, nil)
	res := upOrFail(t, s, req)
	req.State = res.State
	th.h.LinkSetDown(th.link(name + "0"))
	th.h.LinkDel(th.link(name + "1"))
	err := s.Check(ctx, req)
	if err == nil || !strings.Contains(err.Error(), `host interface "`+name+`0" is down`) || !strings.Contains(err.Error(), `host interface "`+name+`1" (eth1 in /run/netns/`+name+`) is gone`) {
		t.Errorf("Check: %v", err)
	}
}

func TestConformance(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	th.bridge("br0", 0)
	th.bridge("br1", 0)
	name := subhostName("k")
	stagetest.Conformance(t, s, request(name, []string{"br0:06:00:00:00:01:01", "br1:06:00:00:00:01:02"}, nil))
	if netnsExists(name) || th.has(name+"0") || th.has(name+"1") {
		t.Errorf("conformance run left something behind")
	}
	if d := stagetest.Serve(t, s).Describe(); d.Name != "net-veth" {
		t.Errorf("Describe over RPC: %+v", d)
	}
}

// TestTwoSubhostsReachEachOther plugs two subhosts into one bridge and
// opens a TCP connection between addresses the test gives them.
func TestTwoSubhostsReachEachOther(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	th.bridge("br0", 0)
	a, b := subhostName("x"), subhostName("y")
	upOrFail(t, s, request(a, []string{"br0:06:00:00:00:02:01"}, nil))
	upOrFail(t, s, request(b, []string{"br0:06:00:00:00:02:02"}, nil))
	for name, addr := range map[string]string{a: "198.18.9.1/24", b: "198.18.9.2/24"} {
		g := guest(t, name)
		eth0, err := g.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		ip, _ := netlink.ParseAddr(addr)
		if err := g.AddrAdd(eth0, ip); err != nil {
			t.Fatalf("address %s in %s: %v", addr, name, err)
		}
	}

	var ln net.Listener
	if err := inNetns(a, func() (err error) {
		ln, err = net.Listen("tcp4", "198.18.9.1:0")
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", a, err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		n, _ := c.Read(buf)
		got <- string(buf[:n])
	}()
	err := inNetns(b, func() error {
		c, err := net.DialTimeout("tcp4", ln.Addr().String(), 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("hello"))
		return err
	})
	if err != nil {
		t.Fatalf("connect from %s to %s: %v", b, ln.Addr(), err)
	}
	if msg := <-got; msg != "hello" {
		t.Errorf("%s received %q", a, msg)
	}
}

// TestBadInput: every problem is refused by Validate and by Up, with one
// line naming the element, and leaves nothing behind.
func TestBadInput(t *testing.T) {
	stagetest.RequireRoot(t)
	for _, tc := range []struct {
		desc    string
		name    string // subhost name suffix, or a whole name when long
		bridges []string
		extra   map[string]string
		setup   func(th *testHost, s *stage, name string)
		others  []sdk.Neighbour
		kind    sdk.ErrorKind
		want    string
	}{
		{desc: "multicast MAC", bridges: []string{"br0:07:a7:dd:b4:02:f2"},
			kind: sdk.KindInvalidConfig, want: `config /x/config:2: BRIDGES[0] "br0:07:a7:dd:b4:02:f2": MAC 07:a7:dd:b4:02:f2 is multicast`},
		{desc: "five octets", bridges: []string{"br0:06:a7:dd:b4:02"},
			kind: sdk.KindInvalidConfig, want: `BRIDGES[0] "br0:06:a7:dd:b4:02": MAC "06:a7:dd:b4:02" has 5 octets`},
		{desc: "not hex", bridges: []string{"br0:06:a7:dd:b4:02:zz"},
			kind: sdk.KindInvalidConfig, want: `octet 6 "zz" is not two hex digits`},
		{desc: "all zeros", bridges: []string{"br0:00:00:00:00:00:00"},
			kind: sdk.KindInvalidConfig, want: `MAC 00:00:00:00:00:00 is all zeros`},
		{desc: "no colon", bridges: []string{"br0"},
			kind: sdk.KindInvalidConfig, want: `BRIDGES[0] "br0": want bridge:MAC`},
		{desc: "duplicate MAC", bridges: []string{"br0:06:a7:dd:b4:02:f2", "br0:06:a7:dd:b4:02:f2"},
			kind: sdk.KindInvalidConfig, want: `BRIDGES[1] "br0:06:a7:dd:b4:02:f2": MAC 06:a7:dd:b4:02:f2 is also given in BRIDGES[0]`},
		{desc: "MAC of a running subhost", bridges: []string{"br0:06:a7:dd:b4:02:f2"},
			others: []sdk.Neighbour{{Name: "other", Status: "running",
				Interfaces: []sdk.Interface{{HostName: "other0", GuestName: "eth0", MAC: "06:A7:DD:B4:02:F2", Bridge: "br0"}}}},
			kind: sdk.KindConflict, want: `BRIDGES[0] "br0:06:a7:dd:b4:02:f2": MAC 06:a7:dd:b4:02:f2 is already used by subhost "other" (running, its eth0)`},
		{desc: "missing bridge", bridges: []string{"nosuchbr:06:a7:dd:b4:02:f2"},
			kind: sdk.KindInvalidConfig, want: `config /x/config:2: BRIDGES[0] "nosuchbr:06:a7:dd:b4:02:f2": bridge "nosuchbr" does not exist`},
		{desc: "not a bridge", bridges: []string{"lo:06:a7:dd:b4:02:f2"},
			kind: sdk.KindInvalidConfig, want: `BRIDGES[0] "lo:06:a7:dd:b4:02:f2": "lo" is not a bridge but a device`},
		{desc: "name too long", name: "averylongname15", bridges: []string{"br0:06:a7:dd:b4:02:f2"},
			kind: sdk.KindInvalidConfig, want: `host interface name "averylongname150" is 16 characters, the kernel allows 15: use a shorter subhost name or set HOSTIF_PREFIX`},
		{desc: "bad HOSTIF_PREFIX", bridges: []string{"br0:06:a7:dd:b4:02:f2"}, extra: map[string]string{"HOSTIF_PREFIX": "a b"},
			kind: sdk.KindInvalidConfig, want: `config /x/config:3: HOSTIF_PREFIX "a b": interface names cannot contain ' '`},
		{desc: "host interface not ours", bridges: []string{"br0:06:a7:dd:b4:02:f2"},
			setup: func(th *testHost, s *stage, name string) { th.bridge(name+"0", 0) },
			kind:  sdk.KindConflict, want: `BRIDGES[0] "br0:06:a7:dd:b4:02:f2": host interface "NAME0" already exists and is not NAME's eth0 with MAC 06:a7:dd:b4:02:f2: it is a bridge, not a veth`},
		{desc: "host veth of someone else", bridges: []string{"br0:06:a7:dd:b4:02:f2"},
			setup: func(th *testHost, s *stage, name string) {
				attrs := netlink.NewLinkAttrs()
				attrs.Name = name + "0"
				v := netlink.NewVeth(attrs)
				v.PeerName = "peerof"
				if err := th.h.LinkAdd(v); err != nil {
					th.t.Fatal(err)
				}
			},
			kind: sdk.KindConflict, want: `host interface "NAME0" already exists and is not NAME's eth0 with MAC 06:a7:dd:b4:02:f2: network namespace /run/netns/NAME does not exist`},
		{desc: "several problems", bridges: []string{"br0:07:00:00:00:00:01", "nosuchbr:06:00:00:00:00:01"},
			kind: sdk.KindInvalidConfig, want: `BRIDGES[0] "br0:07:00:00:00:00:01": MAC 07:00:00:00:00:01 is multicast (the first octet is odd): a NIC needs a unicast address, e.g. a locally administered one whose first octet ends in 2, 6, a or e
config /x/config:2: BRIDGES[1] "nosuchbr:06:00:00:00:00:01": bridge "nosuchbr" does not exist`},
	} {
		t.Run(strings.ReplaceAll(tc.desc, " ", "_"), func(t *testing.T) {
			stagetest.NoLeaks(t)
			th, s := newTestHost(t)
			th.bridge("br0", 0)
			name := subhostName("z")
			if tc.name != "" {
				name = tc.name
			}
			if tc.setup != nil {
				tc.setup(th, s, name)
			}
			before := th.linkNames()
			req := request(name, tc.bridges, tc.extra)
			req.Others = tc.others
			want := strings.ReplaceAll(tc.want, "NAME", name)
			verr := s.Validate(ctx, req)
			_, uerr := s.Up(ctx, req)
			for call, err := range map[string]error{"Validate": verr, "Up": uerr} {
				if err == nil {
					t.Errorf("%s accepted it", call)
					continue
				}
				if sdk.KindOf(err) != tc.kind || !strings.Contains(err.Error(), want) {
					t.Errorf("%s: %q (%s), want %s containing %q", call, err, sdk.KindOf(err), tc.kind, want)
				}
			}
			if netnsExists(name) {
				deleteNetns(netnsDir + "/" + name)
				t.Errorf("netns left behind")
			}
			if got := th.linkNames(); !reflect.DeepEqual(got, before) {
				t.Errorf("host links changed: %v -> %v", before, got)
			}
		})
	}
}

// TestDownWhileSomethingHoldsTheNamespace: Down lets the kernel take the
// veth pairs away with the namespace, and deletes them itself when the
// namespace outlives its pin (here the test holds it open, as a shell
// nsenter'ed into it would).
func TestDownWhileSomethingHoldsTheNamespace(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	th.bridge("br0", 0)
	before := th.linkNames()
	name := subhostName("h")
	req := request(name, []string{"br0:06:00:00:00:05:01"}, nil)
	upOrFail(t, s, req)
	held, err := os.Open(netnsDir + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := s.Down(ctx, req); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if netnsExists(name) || !reflect.DeepEqual(th.linkNames(), before) {
		t.Errorf("left netns %v, links %v (before %v)", netnsExists(name), th.linkNames(), before)
	}
}

// heldNamespace brings up a subhost with one veth on br0 and holds its
// namespace open, as a shell nsenter'ed into it would, so that the
// kernel cannot take the pair away: only Down's own delete can. Down is
// told to wait for the kernel for an hour, and given a minute.
func heldNamespace(t *testing.T, tag string) (th *testHost, s *stage, req *sdk.Request, before []string, ctx context.Context) {
	t.Helper()
	th, s = newTestHost(t)
	th.bridge("br0", 0)
	before = th.linkNames()
	name := subhostName(tag)
	req = request(name, []string{"br0:06:00:00:00:05:02"}, nil)
	upOrFail(t, s, req)
	held, err := os.Open(netnsDir + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() })
	wait := vethTeardownWait
	vethTeardownWait = time.Hour
	t.Cleanup(func() { vethTeardownWait = wait })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return th, s, req, before, ctx
}

// TestDownDeletesAtOnceWhenOthersAreUnderWay: a Down that finds another
// waiting for the kernel (here the test holds the name) does not wait:
// it deletes its pair, and knocks.
func TestDownDeletesAtOnceWhenOthersAreUnderWay(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	other := solo.Take(teardownSocket)
	if other == nil {
		t.Fatal("cannot take the teardown socket's name")
	}
	defer other.Release()
	th, s, req, before, ctx := heldNamespace(t, "a")
	if err := s.Down(ctx, req); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if ctx.Err() != nil {
		t.Errorf("Down waited for the kernel with another Down under way")
	}
	if !other.Knocked() {
		t.Errorf("Down did not knock on the waiting one's socket")
	}
	if got := th.linkNames(); !reflect.DeepEqual(got, before) {
		t.Errorf("links %v, before %v", got, before)
	}
}

// knock connects to the teardown socket, as a Down that finds its name
// taken does, and reports whether something listened there.
func knock() bool {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.Connect(fd, &unix.SockaddrUnix{Name: teardownSocket}) == nil
}

// TestDownWaitingStopsWhenAnotherStarts: a Down waiting for the kernel
// stops waiting, and deletes its pair, when another Down knocks.
func TestDownWaitingStopsWhenAnotherStarts(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s, req, before, ctx := heldNamespace(t, "w")
	done := make(chan error, 1)
	go func() { done <- s.Down(ctx, req) }()
	// Knock as another Down would, once the first holds the name.
	for knocked := false; !knocked; {
		select {
		case err := <-done:
			t.Fatalf("Down returned (%v) before it was knocked: it did not wait for the kernel", err)
		case <-time.After(time.Millisecond):
		}
		knocked = knock()
	}
	if err := <-done; err != nil {
		t.Fatalf("Down: %v", err)
	}
	if ctx.Err() != nil {
		t.Errorf("Down went on waiting for the kernel after the knock")
	}
	if got := th.linkNames(); !reflect.DeepEqual(got, before) {
		t.Errorf("links %v, before %v", got, before)
	}
}

func TestRollbackAfterFirstVeth(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	th.bridge("br0", 0)
	th.bridge("br1", 0)
	before := th.linkNames()
	injected := errors.New("injected failure")
	afterFirstVethHook = func() error { return injected }
	t.Cleanup(func() { afterFirstVethHook = nil })

	name := subhostName("f")
	req := request(name, []string{"br0:06:00:00:00:03:01", "br1:06:00:00:00:03:02"}, nil)
	if _, err := s.Up(ctx, req); !errors.Is(err, injected) {
		t.Fatalf("Up: %v, want the injected failure", err)
	}
	if netnsExists(name) || !reflect.DeepEqual(th.linkNames(), before) {
		t.Errorf("rollback left netns %v, links %v (before %v)", netnsExists(name), th.linkNames(), before)
	}

	// On re-entry, only what this Up made is rolled back: the adopted
	// namespace and first veth stay.
	afterFirstVethHook = nil
	upOrFail(t, s, request(name, []string{"br0:06:00:00:00:03:01"}, nil))
	afterFirstVethHook = func() error { return injected }
	if _, err := s.Up(ctx, req); !errors.Is(err, injected) {
		t.Fatalf("Up: %v, want the injected failure", err)
	}
	if !netnsExists(name) || !th.has(name+"0") || th.has(name+"1") {
		t.Errorf("after a failed re-entry: netns %v, %s0 %v, %s1 %v; want the first two only", netnsExists(name), name, th.has(name+"0"), name, th.has(name+"1"))
	}
}

// TestInProcessNetns runs the stage as the plugin does, with no host
// namespace set, in a child process that nsenter put into the test's
// throwaway namespace: the bridges are that namespace's.
func TestInProcessNetns(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("no nsenter")
	}
	th, s := newTestHost(t)
	th.bridge("br0", 0)
	name := subhostName("n")
	t.Cleanup(func() { s.Down(ctx, request(name, []string{"br0:06:00:00:00:04:01"}, nil)) })
	for _, call := range []string{"up", "check", "up", "down"} {
		cmd := exec.Command("nsenter", fmt.Sprintf("--net=/proc/%d/fd/%d", os.Getpid(), th.ns.Fd()), "--",
			os.Args[0], "-test.run=^TestHelperStage$")
		cmd.Env = append(os.Environ(), "NET_VETH_HELPER="+call, "NET_VETH_NAME="+name, mainThreadElsewhere+"=1", lockDirEnv+"="+lockDir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s in the test netns: %v\n%s", call, err, out)
		}
		switch call {
		case "check":
			host := th.link(name + "0")
			if host.Attrs().MasterIndex != th.link("br0").Attrs().Index {
				t.Errorf("host end not in the test netns's br0")
			}
		case "down":
			if netnsExists(name) || th.has(name+"0") {
				t.Errorf("down left things behind")
			}
		}
	}
}

// TestHelperStage is the child of TestInProcessNetns.
func TestHelperStage(t *testing.T) {
	call := os.Getenv("NET_VETH_HELPER")
	if call == "" {
		t.Skip("only run by TestInProcessNetns")
	}
	s := &stage{}
	req := request(os.Getenv("NET_VETH_NAME"), []string{"br0:06:00:00:00:04:01"}, nil)
	var err error
	switch call {
	case "up":
		_, err = s.Up(ctx, req)
	case "check":
		err = s.Check(ctx, req)
	case "down":
		err = s.Down(ctx, req)
	}
	if err != nil {
		t.Fatalf("%s: %v", call, err)
	}
}

// TestSameMACOnOneBridgeAtOnce: two subhosts booting at the same moment
// with the same MAC on one bridge both pass Validate (neither has a
// recorded state for the other to see); the second one's Up finds the
// first one's claim in the bridge's forwarding table, fails naming it,
// and leaves nothing. A learned entry for a MAC (a guest last seen
// through the uplink) is taken over, and a port's own address refused.
func TestSameMACOnOneBridgeAtOnce(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	br := th.bridge("br0", 0)
	a, b := subhostName("p"), subhostName("q")
	upOrFail(t, s, request(a, []string{"br0:06:00:00:00:03:01"}, nil))
	before := th.linkNames()
	_, err := s.Up(ctx, request(b, []string{"br0:06:00:00:00:03:01"}, nil))
	want := fmt.Sprintf(`BRIDGES[0] "br0:06:00:00:00:03:01": MAC 06:00:00:00:03:01 is already claimed on bridge "br0" by its port %q`, a+"0")
	if err == nil || !strings.Contains(err.Error(), want) || sdk.KindOf(err) != sdk.KindConflict {
		t.Errorf("Up of a second subhost with the same MAC: %v, want a conflict saying %s", err, want)
	}
	if after := th.linkNames(); !slices.Equal(after, before) || netnsExists(b) {
		t.Errorf("the refused Up left links %v (before: %v) or its netns (%v)", after, before, netnsExists(b))
	}

	// The uplink: a port whose far side has a MAC of its own and has
	// shown the bridge another one.
	th.uplink(br, "52:54:00:12:34:57")
	// Up, for the port to learn.
	for _, n := range []string{"nic0p", "nic0"} {
		if err := th.h.LinkSetUp(th.link(n)); err != nil {
			t.Fatal(err)
		}
	}
	learned, _ := net.ParseMAC("06:00:00:00:03:02")
	if err := th.h.NeighAdd(&netlink.Neigh{LinkIndex: th.link("nic0").Attrs().Index, Family: unix.AF_BRIDGE,
		State: netlink.NUD_REACHABLE, Flags: netlink.NTF_MASTER, HardwareAddr: learned}); err != nil {
		t.Fatal(err)
	}
	c := subhostName("r")
	upOrFail(t, s, request(c, []string{"br0:06:00:00:00:03:02"}, nil))
	entries, _ := th.h.NeighList(th.link(c+"0").Attrs().Index, unix.AF_BRIDGE)
	if !slices.ContainsFunc(entries, func(n netlink.Neigh) bool {
		return bytes.Equal(n.HardwareAddr, learned) && n.State&netlink.NUD_NOARP != 0
	}) {
		t.Errorf("the learned MAC is not %s's static entry now: %+v", c+"0", entries)
	}
	own := request(subhostName("s"), []string{"br0:52:54:00:12:34:57"}, nil)
	t.Cleanup(func() { s.Down(ctx, own) }) // had it come up
	_, err = s.Up(ctx, own)
	if want := `MAC 52:54:00:12:34:57 is the address of bridge "br0"'s port "nic0"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Up with a port's own MAC: %v, want %s", err, want)
	}
}

// TestSameMACOnTwoBridgesAtOnce: MACs are unique on the host, whatever
// the bridge. Two subhosts booting at the same moment with the same MAC
// on two bridges both pass Validate; the one whose Up comes second finds
// the first one's claim on the other bridge, fails naming it, and leaves
// nothing. A static entry that is not a subhost's (a port that is not a
// veth) on another bridge does not stop a boot.
func TestSameMACOnTwoBridgesAtOnce(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	th, s := newTestHost(t)
	th.bridge("br0", 0)
	br1 := th.bridge("br1", 0)
	a, b := subhostName("p"), subhostName("q")
	upOrFail(t, s, request(a, []string{"br1:06:00:00:00:05:01"}, nil))
	before := th.linkNames()
	_, err := s.Up(ctx, request(b, []string{"br0:06:00:00:00:05:01"}, nil))
	want := fmt.Sprintf(`BRIDGES[0] "br0:06:00:00:00:05:01": MAC 06:00:00:00:05:01 is claimed on bridge "br1" by its port %q too`, a+"0")
	if err == nil || !strings.Contains(err.Error(), want) || sdk.KindOf(err) != sdk.KindConflict {
		t.Errorf("Up of a second subhost with the same MAC on another bridge: %v, want a conflict saying %s", err, want)
	}
	if after := th.linkNames(); !slices.Equal(after, before) || netnsExists(b) {
		t.Errorf("the refused Up left links %v (before: %v) or its netns (%v)", after, before, netnsExists(b))
	}

	th.tap("static0")
	if err := th.h.LinkSetMaster(th.link("static0"), br1); err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("06:00:00:00:05:02")
	if err := th.h.NeighAdd(&netlink.Neigh{LinkIndex: th.link("static0").Attrs().Index, Family: unix.AF_BRIDGE,
		State: netlink.NUD_NOARP, Flags: netlink.NTF_MASTER, HardwareAddr: mac}); err != nil {
		t.Fatal(err)
	}
	upOrFail(t, s, request(subhostName("r"), []string{"br0:06:00:00:00:05:02"}, nil))
}
