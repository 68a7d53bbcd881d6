package main

import (
	"fmt"
	"strings"

	"github.com/subhost/subhost/internal/holders"
	"github.com/subhost/subhost/internal/mountinfo"
)

// maxHolders bounds the report.
const maxHolders = 12

// heldBy says what keeps a filesystem or a block device busy: the
// processes holding t (by device number, so processes in the guest's
// namespaces count too), mounts below live (when not "") in this mount
// namespace, and other mount namespaces that mount it.
func heldBy(t holders.Target, live string, mounts []mountinfo.Entry) string {
	var out []string
	if live != "" {
		for _, m := range mounts {
			if strings.HasPrefix(m.Mountpoint, live+"/") {
				out = append(out, fmt.Sprintf("a mount on %s (%s)", m.Mountpoint, m.FSType))
			}
		}
	}
	t.Namespaces = true
	for _, h := range holders.Find(t) {
		if len(h.Uses) > 0 {
			var what []string
			for _, u := range h.Uses {
				switch u.What {
				case "cwd", "root", "exe":
					// A guest's path is relative to its own root: not
					// worth printing.
					what = append(what, u.What)
				default:
					what = append(what, u.String())
				}
			}
			out = append(out, h.Who()+": "+strings.Join(what, ", "))
		}
		if h.MountedAt != "" {
			out = append(out, fmt.Sprintf("the mount namespace of %s mounts it on %s", h.Who(), h.MountedAt))
		}
	}
	switch {
	case len(out) == 0:
		return "held by nothing subhost can see (another mount namespace or a kernel user)"
	case len(out) > maxHolders:
		return "held by " + strings.Join(out[:maxHolders], "; ") + fmt.Sprintf("; and %d more", len(out)-maxHolders)
	default:
		return "held by " + strings.Join(out, "; ")
	}
}
