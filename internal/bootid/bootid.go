// Package bootid is the running kernel's boot ID, which tells what was
// recorded during this boot of the host from what an earlier one left.
package bootid

import (
	"os"
	"strings"
	"sync"
)

// Current is the running kernel's boot ID, "" where it cannot be read.
var Current = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
})

// Earlier reports whether something saved with boot ID id was saved
// before the host's last reboot. Without one (saved by an older subhost)
// it is taken as this boot's, as it always was.
func Earlier(id string) bool {
	return id != "" && Current() != "" && id != Current()
}
