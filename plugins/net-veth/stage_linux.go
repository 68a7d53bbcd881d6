package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/solo"
	"github.com/subhost/subhost/internal/version"
	"github.com/subhost/subhost/sdk"
)

// stage is the net-veth stage. Its zero value is what the plugin serves;
// tests point it at a throwaway network namespace and state directory.
type stage struct {
	// hostNetns is the path of the network namespace that holds the
	// bridges and the host ends; "" is this process's own.
	hostNetns string
}

var _ sdk.Stage = (*stage)(nil)

// afterFirstVethHook, when set, runs right after Up made its first veth
// pair: tests make it fail to see Up roll back.
var afterFirstVethHook func() error

// upState is what Up hands back to later calls: what it made, so that
// Down and Check find it even if the config changed since.
type upState struct {
	Netns      string          `json:"netns"`
	Interfaces []sdk.Interface `json:"interfaces,omitempty"`
}

func (s *stage) Describe() sdk.Description {
	return sdk.Description{
		Name:    "net-veth",
		Version: version.Version,
		Summary: "netns /run/netns/NAME and a veth pair per BRIDGES element: ethN inside with its MAC, NAMEN (or HOSTIF_PREFIX N) in the host bridge",
		Record:  &sdk.RecordUse{Reads: []string{sdk.FieldNetns}, Writes: []string{sdk.FieldNetns, sdk.FieldInterfaces}},
		Vars: []sdk.ConfigVar{
			{Name: "BRIDGES", Doc: "( bridge:MAC ... ): interface i is eth<i> inside, with that MAC, and <NAME><i> on the host, plugged into that bridge (also from the environment)"},
			{Name: "HOSTIF_PREFIX", Doc: "host interface names are <HOSTIF_PREFIX><i> instead of <NAME><i>, for names too long for the kernel's 15 characters", Default: "NAME"},
		},
	}
}

func (s *stage) Validate(ctx context.Context, req *sdk.Request) error {
	_, _, err := s.specAndSurvey(req)
	return err
}

// specAndSurvey parses the config and surveys the host, changing nothing. On
// success it returns the open namespaces and what already exists.
func (s *stage) specAndSurvey(req *sdk.Request) (*spec, *env, error) {
	p, errs := parseSpec(req)
	if p == nil {
		return nil, nil, joinErrors(errs)
	}
	errs = append(errs, checkOthers(p, req.Others)...)
	e, err := s.open(p)
	if err != nil {
		return nil, nil, err
	}
	if e.guestNs != nil && !ownsNetns(req, p.netns) {
		e.close()
		return nil, nil, sdk.Conflictf("network namespace %s exists and subhost did not make it for %s (`ip netns add`, or another tool): remove it if nothing uses it, or give the subhost another name", p.netns, p.name)
	}
	errs = append(errs, e.surveyLinks(p)...)
	if len(errs) > 0 {
		e.close()
		return nil, nil, joinErrors(errs)
	}
	return p, e, nil
}

// ownsNetns reports whether the network namespace at path, when there is
// one, is the subhost's: an earlier stage of its boot made it (userns:
// the boot record names it), this stage's last Up recorded it, or this
// stage marked it made (madeMark).
func ownsNetns(req *sdk.Request, path string) bool {
	if req.Record.Netns == path {
		return true
	}
	var st upState
	if len(req.State) > 0 && json.Unmarshal(req.State, &st) == nil && st.Netns == path {
		return true
	}
	return markedMade(req.Subhost.Name)
}

func (s *stage) Up(ctx context.Context, req *sdk.Request) (_ *sdk.Result, err error) {
	log := sdk.Logger(ctx)
	p, e, err := s.specAndSurvey(req)
	if err != nil {
		return nil, err
	}
	defer e.close()

	// Undo what this call made, newest first, if it fails: what existed
	// before (a hibernated subhost's namespace and veths) stays.
	var undo []func() error
	defer func() {
		if err == nil {
			return
		}
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil {
				log.Warn("roll back", "error", uerr)
			}
		}
	}()

	switch {
	case e.guestNs == nil && req.Record.Netns != "":
		// An earlier stage (userns) made the namespace, owned by the
		// guest's user namespace; one made here would belong to the
		// host's, and the guest's root could not configure its eth0.
		return nil, sdk.NotFoundf("the boot record's network namespace %s does not exist", p.netns)
	case e.guestNs == nil:
		if err := markMade(p.name); err != nil {
			return nil, sdk.Internalf("mark network namespace %s as made here: %w", p.netns, err)
		}
		undo = append(undo, func() error { return unmarkMade(p.name) })
		if err := createNetns(p.netns); err != nil {
			return nil, sdk.Internalf("create network namespace %s: %w", p.netns, err)
		}
		undo = append(undo, func() error { return deleteNetns(p.netns) })
		log.Info("created network namespace", "netns", p.netns)
		if err := e.openGuest(p.netns); err != nil {
			return nil, err
		}
	default:
		log.Info("adopting network namespace", "netns", p.netns)
	}
	lo, err := e.guest.LinkByName("lo")
	if err == nil {
		err = e.guest.LinkSetUp(lo)
	}
	if err != nil {
		return nil, sdk.Internalf("bring up lo in %s: %w", p.netns, err)
	}

	made := 0
	for i, c := range p.cables {
		br := e.bridges[i]
		if host := e.existing[i]; host != nil {
			if err := e.adopt(c, host, br); err != nil {
				return nil, err
			}
			log.Info("adopted veth", "host", c.host, "guest", c.guest, "bridge", c.bridge, "mac", c.mac.String())
			continue
		}
		if err := e.create(c, br, &undo); err != nil {
			return nil, err
		}
		log.Info("created veth", "host", c.host, "guest", c.guest, "bridge", c.bridge, "mac", c.mac.String())
		if made++; made == 1 && afterFirstVethHook != nil {
			if err := afterFirstVethHook(); err != nil {
				return nil, err
			}
		}
	}

	if err := e.claimedElsewhere(p.cables); err != nil {
		return nil, err
	}

	rec := p.record()
	state, _ := json.Marshal(upState{Netns: rec.Netns, Interfaces: rec.Interfaces})
	return &sdk.Result{Record: rec, State: state}, nil
}

// hostEndMAC is a random MAC for a veth pair's host end that starts with
// fe (locally administered, unicast), as LXC's do. A bridge whose address
// nobody set takes the lowest MAC among its ports: a host end with a
// random kernel MAC could be lower than the host's own NIC's, and the
// bridge, the host's address on that network, would change its MAC as
// subhosts come and go, leaving its neighbours' ARP caches stale.
func hostEndMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac[1:])
	mac[0] = 0xfe
	return mac
}

// create makes cable c's veth pair with its guest end born in the
// subhost's namespace, plugs the host end into the bridge and brings
// both ends up. undo learns how to remove it as soon as it exists.
func (e *env) create(c cable, br netlink.Link, undo *[]func() error) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = c.host
	attrs.MTU = br.Attrs().MTU // the peer gets it too
	attrs.HardwareAddr = hostEndMAC()
	veth := netlink.NewVeth(attrs)
	veth.PeerName = c.guest
	veth.PeerHardwareAddr = c.mac
	veth.PeerNamespace = netlink.NsFd(e.guestNs.Fd())
	if err := e.host.LinkAdd(veth); err != nil {
		return sdk.Internalf("create veth %q (peer %s in %s): %w", c.host, c.guest, e.guestNs.Name(), err)
	}
	*undo = append(*undo, func() error { return e.delLink(c.host) })
	host, err := e.host.LinkByName(c.host)
	if err != nil {
		return sdk.Internalf("find new veth %q: %w", c.host, err)
	}
	if err := e.host.LinkSetMaster(host, br); err != nil {
		return sdk.Internalf("add %q to bridge %q: %w", c.host, c.bridge, err)
	}
	if err := e.claimMAC(c, host, br); err != nil {
		return err
	}
	guest, err := e.guest.LinkByName(c.guest)
	if err != nil {
		return sdk.Internalf("find new veth end %s in %s: %w", c.guest, e.guestNs.Name(), err)
	}
	if err := e.guest.LinkSetUp(guest); err != nil {
		return sdk.Internalf("bring up %s in %s: %w", c.guest, e.guestNs.Name(), err)
	}
	if err := e.host.LinkSetUp(host); err != nil {
		return sdk.Internalf("bring up %q: %w", c.host, err)
	}
	return nil
}

// adopt takes over an existing veth pair that inspect found to be this
// cable's: it plugs it back into its bridge if it fell out (the bridge
// was recreated) and brings both ends up.
func (e *env) adopt(c cable, host, br netlink.Link) error {
	if host.Attrs().MasterIndex == 0 {
		if err := e.host.LinkSetMaster(host, br); err != nil {
			return sdk.Internalf("add %q to bridge %q: %w", c.host, c.bridge, err)
		}
	}
	if err := e.claimMAC(c, host, br); err != nil {
		return err
	}
	guest, err := e.guest.LinkByIndex(host.Attrs().ParentIndex)
	if err == nil {
		err = e.guest.LinkSetUp(guest)
	}
	if err != nil {
		return sdk.Internalf("bring up %s in %s: %w", c.guest, e.guestNs.Name(), err)
	}
	if err := e.host.LinkSetUp(host); err != nil {
		return sdk.Internalf("bring up %q: %w", c.host, err)
	}
	return nil
}

// claimMAC makes cable c's MAC a static entry of its bridge's forwarding
// table, on the host end: the kernel's own record that the guest behind
// that port has it. The MAC check against the other subhosts (Validate)
// reads their recorded state, which two subhosts booting at once with
// the same MAC on one bridge do not have yet (say, at the host's start);
// the second one's claim finds the first's and fails (on two bridges:
// claimedElsewhere). A learned entry
// for the MAC on another port (the guest ran on another host until a
// moment ago and was seen through the uplink) is taken over. The entry
// goes with the port when the veth pair is deleted.
func (e *env) claimMAC(c cable, host, br netlink.Link) error {
	claim := &netlink.Neigh{
		LinkIndex:    host.Attrs().Index,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_NOARP, // bridge fdb's "static"
		Flags:        netlink.NTF_MASTER,
		HardwareAddr: c.mac,
	}
	err := e.host.NeighAdd(claim)
	if errors.Is(err, unix.EEXIST) {
		holder, held := e.fdbEntry(br, c.mac)
		if held && holder.LinkIndex != host.Attrs().Index && holder.State&(netlink.NUD_NOARP|netlink.NUD_PERMANENT) != 0 {
			return c.errorf(sdk.Conflictf, "MAC %s %s", c.mac, fdbHolder(holder, c.bridge, e.linkName(holder.LinkIndex)))
		}
		err = e.host.NeighSet(claim)
	}
	if err != nil {
		return sdk.Internalf("record MAC %s on %q in bridge %q's forwarding table: %w", c.mac, c.host, c.bridge, err)
	}
	return nil
}

// claimedElsewhere fails for a cable whose MAC a veth port of another
// bridge has claimed too: another subhost booting at this moment with
// the same MAC on another bridge (MACs are unique on the host, as
// Validate's check against the recorded subhosts has it, but neither had
// recorded state for the other to see). Each boot claims on its own
// bridge before it looks at the others, so of two such boots at least
// one sees the other's claim and fails: never both come up.
func (e *env) claimedElsewhere(cables []cable) error {
	entries, err := e.host.NeighListExecute(netlink.Ndmsg{Family: unix.AF_BRIDGE})
	if err != nil {
		return sdk.Internalf("read the bridges' forwarding tables: %w", err)
	}
	for i, c := range cables {
		mine := e.bridges[i].Attrs().Index
		for _, n := range entries {
			if n.MasterIndex == 0 || n.MasterIndex == mine || n.Vlan != 0 || n.State&netlink.NUD_NOARP == 0 ||
				!bytes.Equal(n.HardwareAddr, c.mac) {
				continue
			}
			port, err := e.host.LinkByIndex(n.LinkIndex)
			if err != nil || port.Type() != "veth" {
				continue // a host's own static entry: not a subhost's claim
			}
			return c.errorf(sdk.Conflictf, "MAC %s is claimed on bridge %s by its port %q too (another subhost booting at the same moment with the same MAC on another bridge)",
				c.mac, e.linkName(n.MasterIndex), port.Attrs().Name)
		}
	}
	return nil
}

// fdbEntry finds the entry for mac (VLAN 0, as claimMAC's) in bridge br's
// forwarding table.
func (e *env) fdbEntry(br netlink.Link, mac net.HardwareAddr) (netlink.Neigh, bool) {
	entries, err := e.host.NeighListExecute(netlink.Ndmsg{Family: unix.AF_BRIDGE})
	if err != nil {
		return netlink.Neigh{}, false
	}
	for _, n := range entries {
		if n.MasterIndex == br.Attrs().Index && n.Vlan == 0 && bytes.Equal(n.HardwareAddr, mac) {
			return n, true
		}
	}
	return netlink.Neigh{}, false
}

// fdbHolder says who holds the entry n of bridge br, whose port is
// named port, for an error.
func fdbHolder(n netlink.Neigh, br, port string) string {
	if n.State&netlink.NUD_PERMANENT != 0 {
		return fmt.Sprintf("is the address of bridge %q's port %s", br, port)
	}
	return fmt.Sprintf("is already claimed on bridge %q by its port %s (another subhost booting at the same moment, or a static entry made on the host)", br, port)
}

// linkName names the host link with index i, or says its index.
func (e *env) linkName(i int) string {
	if l, err := e.host.LinkByIndex(i); err == nil {
		return strconv.Quote(l.Attrs().Name)
	}
	return fmt.Sprintf("with index %d", i)
}

func (s *stage) Down(ctx context.Context, req *sdk.Request) error {
	log := sdk.Logger(ctx)
	name := req.Subhost.Name
	if problem := netnsNameProblem(name); problem != "" {
		return sdk.Invalidf("subhost name %q cannot name a network namespace: %s", name, problem)
	}
	// Rediscover by name: what the last Up recorded, and what the config
	// names now.
	var names []string
	var st upState
	if len(req.State) > 0 && json.Unmarshal(req.State, &st) == nil {
		for _, i := range st.Interfaces {
			names = append(names, i.HostName)
		}
	}
	if p, _ := parseSpec(req); p != nil {
		for _, n := range p.hostNames(len(req.Subhost.Array("BRIDGES"))) {
			if !slices.Contains(names, n) && ifNameProblem(n) == "" {
				names = append(names, n)
			}
		}
	}
	path := netnsDir + "/" + name
	e, err := s.open(&spec{name: name})
	if err != nil {
		return err
	}
	defer e.close()
	var errs []error
	owned := ownsNetns(req, path)
	switch f, err := openNetns(path); {
	case !owned && (f != nil || errors.Is(err, errNotNetns)):
		// Someone else's under the subhost's name: neither it nor a
		// veth with its peer there is the subhost's to delete.
		if f != nil {
			f.Close()
		}
		log.Warn("leaving network namespace alone, and the veths into it: subhost did not make it", "netns", path)
		names = nil
	case errors.Is(err, errNotNetns):
		// A crash between creating the file and binding the namespace
		// on it leaves an empty file: deleteNetns removes it below.
		log.Warn("not a network namespace; removing the file", "path", path)
	case err != nil:
		errs = append(errs, sdk.Internalf("open network namespace: %w", err))
	case f != nil:
		// The file alone: telling our veths from others' needs no
		// netlink socket in the namespace, and the kernel lets go of a
		// socket's hold on it only a grace period after it is closed.
		e.guestNs = f
	}

	var ours []netlink.Link
	for _, n := range names {
		link, err := e.host.LinkByName(n)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, sdk.Internalf("look up host interface %q: %w", n, err))
			continue
		}
		// Only a veth whose peer lives in this subhost's namespace is
		// ours: never delete someone else's interface that happens to
		// bear the name.
		if why := e.notOurs(link); why != "" {
			log.Warn("leaving host interface alone", "interface", n, "reason", why)
			continue
		}
		ours = append(ours, link)
	}

	// The namespace goes first, and the veth pairs with it: once nothing
	// holds a namespace the kernel tears it down in the background,
	// deleting every veth pair with an end in it, in about 4 ms here,
	// where deleting a pair outright waits with RTNL held for RCU grace
	// periods (15-35 ms on this machine; a stop waits for it). So Down
	// lets go of the namespace, its own handles included, and, when no
	// other Down is under way (teardownSocket), waits for the host
	// ends to vanish. One still there then (the kernel is behind, or
	// something else holds the namespace: a shell nsenter'ed into it) is
	// deleted as before.
	e.closeGuest()
	left := ours
	if owned {
		if err := deleteNetns(path); err != nil {
			errs = append(errs, sdk.Internalf("delete network namespace: %w", err))
		} else {
			log.Info("deleted network namespace", "netns", path)
			if err := unmarkMade(name); err != nil {
				errs = append(errs, sdk.Internalf("%w", err))
			}
			if len(ours) > 0 {
				left = e.awaitGone(ctx, ours)
			}
		}
	}
	for _, link := range ours {
		if !slices.Contains(left, link) {
			log.Info("veth gone with the namespace", "host", link.Attrs().Name)
		}
	}
	for _, link := range left {
		if err := e.host.LinkDel(link); err != nil && !isNotFound(err) {
			errs = append(errs, sdk.Internalf("delete host interface %q: %w", link.Attrs().Name, err))
			continue
		}
		log.Info("deleted veth", "host", link.Attrs().Name)
	}
	return errors.Join(errs...)
}

// teardownSocket: waiting for the kernel to take a veth pair away with
// its namespace pays when a stop is alone: the kernel's worker for it needs 3-4 ms.
// When many subhosts stop at once, that one worker falls behind (a busy
// host starves it like any other thread) and every stop waiting for it
// waits long: 100 subhosts stopping at once took 9.8-14.1 s when each
// waited for it (up to 50 ms, 100 ms or 5 s), 7.4-10.4 s when each deleted
// its pairs itself, which the stops do in parallel. So a Down waits for
// the kernel only while no other is under way: it holds an abstract unix
// socket's name meanwhile (package solo). A Down that finds the name
// taken deletes at once and knocks, which tells the one waiting to delete
// at once too. Anyone on the host may take the name or knock: that only
// makes Downs delete as they did before.
//
// teardownSocket is that name, in the network namespace of the calling
// thread: the plugin's own, the host's (the one Downs of one host share).
const teardownSocket = "@subhost-veth-teardown"

// vethTeardownWait is how long a Down alone (teardownSocket) waits for
// the kernel to take a veth pair away with the subhost's namespace
// before it deletes the pair itself. On a quiet host the kernel takes
// 3-4 ms (tens when its RCU grace periods are slow), and Down returns
// 10-15 ms sooner than when it deletes the pair; a host busy enough to
// starve the kernel's worker for longer is better served by the delete.
var vethTeardownWait = 250 * time.Millisecond

// awaitGone polls until none of the host interfaces is there any more
// (by index and name), and returns those still there: at once when
// another Down is under way, else for up to vethTeardownWait, until one
// starts or ctx ends.
func (e *env) awaitGone(ctx context.Context, links []netlink.Link) []netlink.Link {
	claim := solo.Take(teardownSocket)
	if claim == nil {
		return links
	}
	defer claim.Release()
	deadline := time.Now().Add(vethTeardownWait)
	for {
		var left []netlink.Link
		for _, l := range links {
			cur, err := e.host.LinkByIndex(l.Attrs().Index)
			if !isNotFound(err) && (err != nil || cur.Attrs().Name == l.Attrs().Name) {
				left = append(left, l)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) || ctx.Err() != nil || claim.Knocked() {
			return left
		}
		links = left
		time.Sleep(250 * time.Microsecond)
	}
}

func (s *stage) Check(ctx context.Context, req *sdk.Request) error {
	// What the last Up made; without a state, what the config asks for.
	var want []sdk.Interface
	var st upState
	if len(req.State) > 0 {
		if err := json.Unmarshal(req.State, &st); err != nil {
			return sdk.Internalf("net-veth state: %w", err)
		}
		want = st.Interfaces
	} else {
		p, errs := parseSpec(req)
		if len(errs) > 0 {
			return joinErrors(errs)
		}
		want = p.record().Interfaces
	}
	name := req.Subhost.Name
	if problem := netnsNameProblem(name); problem != "" {
		return sdk.Invalidf("subhost name %q cannot name a network namespace: %s", name, problem)
	}
	path := netnsDir + "/" + name
	e, err := s.open(&spec{name: name, netns: path})
	if err != nil {
		return err
	}
	defer e.close()
	if e.guestNs == nil {
		return sdk.NotFoundf("network namespace %s does not exist", path)
	}
	var errs []error
	if lo, err := e.guest.LinkByName("lo"); err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		errs = append(errs, sdk.Conflictf("lo in %s is not up", path))
	}
	for _, i := range want {
		errs = append(errs, e.check(i)...)
	}
	return joinErrors(errs)
}

// check reports how one recorded interface differs from what Up made.
func (e *env) check(i sdk.Interface) []error {
	host, err := e.host.LinkByName(i.HostName)
	if isNotFound(err) {
		return []error{sdk.NotFoundf("host interface %q (%s in %s) is gone", i.HostName, i.GuestName, e.guestNs.Name())}
	}
	if err != nil {
		return []error{sdk.Internalf("look up host interface %q: %w", i.HostName, err)}
	}
	mac, _ := net.ParseMAC(i.MAC)
	c := cable{host: i.HostName, guest: i.GuestName, mac: mac, bridge: i.Bridge}
	guest, why := e.peer(host, c)
	if why != "" {
		return []error{sdk.Conflictf("host interface %q is not %s's %s with MAC %s: %s", i.HostName, e.name, i.GuestName, i.MAC, why)}
	}
	var errs []error
	br, err := e.host.LinkByName(i.Bridge)
	switch {
	case isNotFound(err):
		errs = append(errs, sdk.NotFoundf("bridge %q of host interface %q is gone", i.Bridge, i.HostName))
	case err != nil:
		errs = append(errs, sdk.Internalf("look up bridge %q: %w", i.Bridge, err))
	case host.Attrs().MasterIndex != br.Attrs().Index:
		errs = append(errs, sdk.Conflictf("host interface %q is not a port of bridge %q", i.HostName, i.Bridge))
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		errs = append(errs, sdk.Conflictf("host interface %q is down", i.HostName))
	}
	if guest.Attrs().Flags&net.FlagUp == 0 {
		errs = append(errs, sdk.Conflictf("%s in %s is down", i.GuestName, e.guestNs.Name()))
	}
	return errs
}

// env holds netlink handles on the host's namespace and, when it exists,
// the subhost's.
type env struct {
	name    string
	hostNs  *os.File
	host    *netlink.Handle
	guestNs *os.File // nil while the subhost's namespace does not exist
	guest   *netlink.Handle

	// Filled by inspect, per cable: its bridge, and its host end when a
	// matching veth pair already exists.
	bridges  []netlink.Link
	existing []netlink.Link
}

func (s *stage) open(p *spec) (*env, error) {
	path := s.hostNetns
	if path == "" {
		// This thread's, not /proc/self's: that is the main thread's,
		// which may be in a subhost's namespace since one of
		// onThrowawayThread's goroutines ran there.
		path = "/proc/thread-self/ns/net"
	}
	e := &env{name: p.name}
	var err error
	if e.hostNs, err = os.Open(path); err != nil {
		return nil, sdk.Internalf("open host network namespace: %w", err)
	}
	if e.host, err = handleAt(e.hostNs); err != nil {
		e.close()
		return nil, sdk.Internalf("host network namespace: %w", err)
	}
	if p.netns == "" {
		return e, nil
	}
	if err := e.openGuest(p.netns); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// openGuest opens the subhost's namespace if it exists.
func (e *env) openGuest(path string) error {
	f, err := openNetns(path)
	if errors.Is(err, errNotNetns) {
		return sdk.Conflictf("%s exists but is not a network namespace: stop the subhost, or remove it", path)
	}
	if err != nil {
		return sdk.Internalf("open network namespace: %w", err)
	}
	if f == nil {
		return nil
	}
	return e.setGuest(f)
}

// setGuest takes the open namespace file f as the subhost's.
func (e *env) setGuest(f *os.File) error {
	h, err := handleAt(f)
	if err != nil {
		f.Close()
		return sdk.Internalf("subhost network namespace: %w", err)
	}
	e.guestNs, e.guest = f, h
	return nil
}

// closeGuest lets go of the subhost's namespace: the handle's netlink
// socket and the open file each hold it.
func (e *env) closeGuest() {
	if e.guest != nil {
		e.guest.Close()
	}
	if e.guestNs != nil {
		e.guestNs.Close()
	}
	e.guest, e.guestNs = nil, nil
}

func (e *env) close() {
	for _, h := range []*netlink.Handle{e.host, e.guest} {
		if h != nil {
			h.Close()
		}
	}
	for _, f := range []*os.File{e.hostNs, e.guestNs} {
		if f != nil {
			f.Close()
		}
	}
}

// surveyLinks compares the host with the spec, changing nothing: every
// bridge must exist and be a bridge, and every host end name must be free
// or already this subhost's matching veth (which Up then adopts).
func (e *env) surveyLinks(p *spec) []error {
	var errs []error
	e.bridges = make([]netlink.Link, len(p.cables))
	e.existing = make([]netlink.Link, len(p.cables))
	for i, c := range p.cables {
		br, err := e.host.LinkByName(c.bridge)
		switch {
		case isNotFound(err):
			errs = append(errs, c.errorf(sdk.Invalidf, "bridge %q does not exist", c.bridge))
		case err != nil:
			errs = append(errs, c.errorf(sdk.Internalf, "look up bridge %q: %v", c.bridge, err))
		case br.Type() != "bridge":
			errs = append(errs, c.errorf(sdk.Invalidf, "%q is not a bridge but a %s", c.bridge, br.Type()))
		default:
			e.bridges[i] = br
		}

		host, err := e.host.LinkByName(c.host)
		if isNotFound(err) {
			if e.guest == nil {
				continue
			}
			if _, err := e.guest.LinkByName(c.guest); err == nil {
				errs = append(errs, c.errorf(sdk.Conflictf, "%s already exists in %s without its host end %q: stop the subhost first", c.guest, p.netns, c.host))
			}
			continue
		}
		if err != nil {
			errs = append(errs, c.errorf(sdk.Internalf, "look up host interface %q: %v", c.host, err))
			continue
		}
		if _, why := e.peer(host, c); why != "" {
			errs = append(errs, c.errorf(sdk.Conflictf, "host interface %q already exists and is not %s's %s with MAC %s: %s", c.host, p.name, c.guest, c.mac, why))
			continue
		}
		if m := host.Attrs().MasterIndex; m != 0 && br != nil && m != br.Attrs().Index {
			errs = append(errs, c.errorf(sdk.Conflictf, "host interface %q is a port of another bridge than %q: stop the subhost first", c.host, c.bridge))
			continue
		}
		e.existing[i] = host
	}
	return errs
}

// notOurs says why a host interface is not one of this subhost's veth
// host ends, or "" when it is: a veth whose peer is in the subhost's
// namespace.
func (e *env) notOurs(host netlink.Link) string {
	if host.Type() != "veth" {
		return fmt.Sprintf("it is a %s, not a veth", host.Type())
	}
	if e.guestNs == nil {
		return fmt.Sprintf("network namespace %s does not exist", netnsDir+"/"+e.name)
	}
	// The link dump above gave the peer's namespace an id in the host's
	// namespace if it had none, so this lookup finds it.
	id, err := e.host.GetNetNsIdByFd(int(e.guestNs.Fd()))
	if err != nil || id < 0 || host.Attrs().NetNsID != id {
		return fmt.Sprintf("its peer is not in %s", e.guestNs.Name())
	}
	return ""
}

// peer returns the guest end of a host veth that is this subhost's, or
// says why it is not c's: another kind of link, a peer elsewhere, or a
// peer with another name or MAC.
func (e *env) peer(host netlink.Link, c cable) (netlink.Link, string) {
	if why := e.notOurs(host); why != "" {
		return nil, why
	}
	guest, err := e.guest.LinkByIndex(host.Attrs().ParentIndex)
	if err != nil || guest.Attrs().ParentIndex != host.Attrs().Index {
		return nil, fmt.Sprintf("its peer is not in %s", e.guestNs.Name())
	}
	if guest.Attrs().Name != c.guest {
		return nil, fmt.Sprintf("its peer is %s", guest.Attrs().Name)
	}
	if guest.Attrs().HardwareAddr.String() != c.mac.String() {
		return nil, fmt.Sprintf("its peer %s has MAC %s", c.guest, guest.Attrs().HardwareAddr)
	}
	return guest, ""
}

// delLink deletes a host interface by name; already gone is fine.
func (e *env) delLink(name string) error {
	link, err := e.host.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := e.host.LinkDel(link); err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// joinErrors returns nil, the one error, or all of them joined (the SDK
// sends each as its own problem with its own kind).
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	default:
		return errors.Join(errs...)
	}
}
