// Package layout says where subhost's plugins and helpers are installed
// relative to the running executable. It depends on the standard library
// alone, for the front (cmd/subhost-front) as much as for pluginhost.
package layout

import (
	"os"
	"path/filepath"
)

// CLI is the full CLI's name among subhost's helpers: the installed
// subhost is a small front (cmd/subhost-front) that runs it.
const CLI = "subhost-cli"

// HelperDirs are the directories where subhost's plugins and helpers are
// installed beside the subhost command: PREFIX/lib/subhost/plugins for
// PREFIX/bin/subhost, or bin/plugins in a build tree. The installed
// subhost is a small front that runs the full CLI (subhost-cli) from
// there; so when the running executable is itself in a directory named
// plugins, that directory is the one. Nil when the executable cannot be
// found.
func HelperDirs() []string {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return nil
	}
	bin := filepath.Dir(exe)
	if filepath.Base(bin) == "plugins" {
		return []string{bin}
	}
	return []string{filepath.Clean(filepath.Join(bin, "..", "lib", "subhost", "plugins")), filepath.Join(bin, "plugins")}
}
