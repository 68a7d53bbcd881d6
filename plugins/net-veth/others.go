package main

import (
	"strings"

	"github.com/subhost/subhost/sdk"
)

// macUser is another subhost's interface that holds a MAC.
type macUser struct {
	subhost string
	status  string
	iface   string
}

// macsInUse maps the MACs of the other subhosts' interfaces, as the runner
// tells them in the request (every subhost that is up, hibernating or
// failed with its veths possibly still there), to who uses them.
func macsInUse(others []sdk.Neighbour) map[string]macUser {
	out := map[string]macUser{}
	for _, o := range others {
		for _, i := range o.Interfaces {
			out[strings.ToLower(i.MAC)] = macUser{subhost: o.Name, status: o.Status, iface: i.GuestName}
		}
	}
	return out
}

// checkOthers reports every cable whose MAC another subhost uses.
func checkOthers(p *spec, others []sdk.Neighbour) []error {
	if len(p.cables) == 0 {
		return nil
	}
	used := macsInUse(others)
	var errs []error
	for _, c := range p.cables {
		if u, ok := used[c.mac.String()]; ok {
			errs = append(errs, c.errorf(sdk.Conflictf, "MAC %s is already used by subhost %q (%s, its %s)", c.mac, u.subhost, u.status, u.iface))
		}
	}
	return errs
}
