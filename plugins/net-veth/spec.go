package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/subhost/subhost/sdk"
)

// netnsDir is where iproute2 keeps named network namespaces.
const netnsDir = "/run/netns"

// maxIfName is the longest interface name the kernel takes (IFNAMSIZ-1).
const maxIfName = 15

// cable is one BRIDGES element: a veth pair from a host bridge into the
// subhost.
type cable struct {
	index  int
	elem   string // the element as written, for messages
	where  string // where BRIDGES was set, for messages
	bridge string
	mac    net.HardwareAddr
	host   string // host end, <PREFIX><index>
	guest  string // guest end, eth<index>
}

// errorf reports a problem with this element in the one-line form
// `config FILE:LINE: BRIDGES[i] "elem": problem`.
func (c cable) errorf(mk func(string, ...any) error, format string, args ...any) error {
	return mk("%s: BRIDGES[%d] %q: %s", c.where, c.index, c.elem, fmt.Sprintf(format, args...))
}

func (c cable) record() sdk.Interface {
	return sdk.Interface{HostName: c.host, GuestName: c.guest, MAC: c.mac.String(), Bridge: c.bridge}
}

// spec is what the config asks of this stage.
type spec struct {
	name   string // the subhost's name, also its netns's
	netns  string // netnsDir/name
	prefix string // host interface prefix
	cables []cable
}

func (p *spec) record() sdk.BootRecord {
	r := sdk.BootRecord{Netns: p.netns}
	for _, c := range p.cables {
		r.Interfaces = append(r.Interfaces, c.record())
	}
	return r
}

// hostNames lists the host interface names the config gives, whether or
// not the rest of each element is valid: Down uses it to find what a
// previous Up may have made.
func (p *spec) hostNames(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, p.prefix+strconv.Itoa(i))
	}
	return out
}

// parseSpec reads the subhost name, HOSTIF_PREFIX and BRIDGES. It looks
// at nothing but the request. The spec holds every element that parsed;
// the errors name every one that did not, one line each.
func parseSpec(req *sdk.Request) (*spec, []error) {
	sub := &req.Subhost
	p := &spec{name: sub.Name, netns: netnsDir + "/" + sub.Name, prefix: sub.Name}
	if req.Record.Netns != "" {
		// Made by an earlier stage (userns): adopted, never made here.
		p.netns = req.Record.Netns
	}
	var errs []error
	if problem := netnsNameProblem(sub.Name); problem != "" {
		// Without a usable name there is no netns path: stop here.
		return nil, []error{sdk.Invalidf("subhost name %q cannot name a network namespace: %s", sub.Name, problem)}
	}
	prefixSet, prefixOK := false, true
	if v, ok := sub.Lookup("HOSTIF_PREFIX"); ok {
		prefix := sub.Scalar("HOSTIF_PREFIX")
		prefixSet, prefixOK = true, false
		switch {
		case len(v.Words) > 1:
			errs = append(errs, sdk.Invalidf("%s: HOSTIF_PREFIX must be one word, not %d", sub.Where("HOSTIF_PREFIX"), len(v.Words)))
		case prefix == "":
			errs = append(errs, sdk.Invalidf("%s: HOSTIF_PREFIX is empty: remove it to name host interfaces after the subhost", sub.Where("HOSTIF_PREFIX")))
		default:
			if problem := ifNameCharsProblem(prefix); problem != "" {
				errs = append(errs, sdk.Invalidf("%s: HOSTIF_PREFIX %q: %s", sub.Where("HOSTIF_PREFIX"), prefix, problem))
			} else if len(prefix) >= maxIfName {
				errs = append(errs, sdk.Invalidf("%s: HOSTIF_PREFIX %q is %d characters: with the interface number it must fit in %d", sub.Where("HOSTIF_PREFIX"), prefix, len(prefix), maxIfName))
			} else {
				prefixOK = true
			}
			p.prefix = prefix
		}
	}
	where := sub.Where("BRIDGES")
	seen := map[string]int{} // MAC -> element index
	for i, elem := range sub.Array("BRIDGES") {
		c := cable{index: i, elem: elem, where: where, guest: "eth" + strconv.Itoa(i), host: p.prefix + strconv.Itoa(i)}
		bridge, macText, ok := strings.Cut(elem, ":")
		if !ok {
			errs = append(errs, c.errorf(sdk.Invalidf, "want bridge:MAC, like br0:06:a7:dd:b4:02:f2"))
			continue
		}
		c.bridge = bridge
		bad := false
		if problem := ifNameProblem(bridge); problem != "" {
			errs = append(errs, c.errorf(sdk.Invalidf, "bridge name %q: %s", bridge, problem))
			bad = true
		}
		mac, err := parseMAC(macText)
		if err != nil {
			errs = append(errs, c.errorf(sdk.Invalidf, "%v", err))
			bad = true
		} else {
			c.mac = mac
			if j, dup := seen[mac.String()]; dup {
				errs = append(errs, c.errorf(sdk.Invalidf, "MAC %s is also given in BRIDGES[%d]", mac, j))
				bad = true
			} else {
				seen[mac.String()] = i
			}
		}
		switch {
		case !prefixOK:
			bad = true // HOSTIF_PREFIX's own error says it all
		case !prefixSet && ifNameCharsProblem(c.host) != "":
			errs = append(errs, c.errorf(sdk.Invalidf, "host interface name %q (from the subhost name): %s: set HOSTIF_PREFIX in the config", c.host, ifNameCharsProblem(c.host)))
			bad = true
		case len(c.host) > maxIfName:
			errs = append(errs, c.errorf(sdk.Invalidf, "host interface name %q is %d characters, the kernel allows %d: use a shorter subhost name or set HOSTIF_PREFIX in the config", c.host, len(c.host), maxIfName))
			bad = true
		}
		if !bad {
			p.cables = append(p.cables, c)
		}
	}
	return p, errs
}

// parseMAC takes exactly six colon-separated octets of two hex digits,
// and only a unicast address that is not all zeros: a guest NIC's.
func parseMAC(s string) (net.HardwareAddr, error) {
	octets := strings.Split(s, ":")
	if len(octets) != 6 {
		return nil, fmt.Errorf("MAC %q has %d octets, want six like 06:a7:dd:b4:02:f2", s, len(octets))
	}
	mac := make(net.HardwareAddr, 6)
	for i, o := range octets {
		if len(o) != 2 {
			return nil, fmt.Errorf("MAC %q: octet %d %q is not two hex digits", s, i+1, o)
		}
		v, err := strconv.ParseUint(o, 16, 8)
		if err != nil {
			return nil, fmt.Errorf("MAC %q: octet %d %q is not two hex digits", s, i+1, o)
		}
		mac[i] = byte(v)
	}
	if mac[0]&1 != 0 {
		return nil, fmt.Errorf("MAC %s is multicast (the first octet is odd): a NIC needs a unicast address, e.g. a locally administered one whose first octet ends in 2, 6, a or e", mac)
	}
	if string(mac) == string(make([]byte, 6)) {
		return nil, errors.New("MAC 00:00:00:00:00:00 is all zeros")
	}
	return mac, nil
}

// ifNameProblem says why the kernel would refuse name as an interface
// name (dev_valid_name), or "" when it would take it.
func ifNameProblem(name string) string {
	if name == "" {
		return "empty"
	}
	if len(name) > maxIfName {
		return fmt.Sprintf("longer than %d characters", maxIfName)
	}
	return ifNameCharsProblem(name)
}

// ifNameCharsProblem is ifNameProblem without the length limit.
func ifNameCharsProblem(name string) string {
	if name == "." || name == ".." {
		return "not a valid interface name"
	}
	for _, r := range name {
		if r == '/' || r == ':' || r <= ' ' || r >= 0x7f {
			return fmt.Sprintf("interface names cannot contain %q", r)
		}
	}
	return ""
}

// netnsNameProblem says why name cannot be a file in netnsDir.
func netnsNameProblem(name string) string {
	switch {
	case name == "":
		return "empty"
	case name == "." || name == "..":
		return "not a file name"
	case strings.ContainsAny(name, "/\x00"):
		return "it contains a slash or NUL"
	}
	return ""
}
