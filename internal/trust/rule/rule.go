// Package rule is package trust's rule alone, with no dependency beyond
// the standard library, for the front (cmd/subhost-front), which applies
// it to the CLI it executes and must stay small: a file root reads or runs
// must be owned by root (or the user running subhost) and not writable by
// group or others.
package rule

import (
	"fmt"
	"os"
	"syscall"
)

// Problem says what breaks the rule for a file with this status, or ""
// when it keeps it: the end of a sentence that begins with the file's
// name, and says how to fix it.
func Problem(st *syscall.Stat_t) string {
	// The owner may be root, or the user running subhost (who is root in
	// production; a file one owns is as trusted as oneself).
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Sprintf("is owned by uid %d, not root: chown root it", st.Uid)
	}
	if st.Mode&0o022 != 0 {
		return fmt.Sprintf("is writable by group or others (mode %04o): chmod go-w it", st.Mode&0o7777)
	}
	return ""
}
