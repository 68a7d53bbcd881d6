package pluginhost

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/subhost/subhost/internal/layout"
	"github.com/subhost/subhost/internal/trust"
	"github.com/subhost/subhost/sdk"
)

// PathEnv lists extra plugin directories, colon-separated.
const PathEnv = "SUBHOST_PLUGIN_PATH"

// SiteDir is where a site drops its own plugins, under the default etc
// directory (subhost --etc-dir moves it).
const SiteDir = "/etc/subhost/plugins"

// notPlugins are executables that live beside the plugins but are not
// stages: the guest init that the init stage injects, the launcher it
// starts the guest with, the small process a supervisor becomes while its
// guest runs, and the full CLI that the installed subhost (a small front)
// runs.
var notPlugins = []string{"subhost-init", "subhost-launch", "subhost-monitor", layout.CLI}

var pluginName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// SearchPath returns the plugin directories in the order they are
// searched: --plugin-dir, $SUBHOST_PLUGIN_PATH, the site's directory
// (siteDir, usually SiteDir), then the directory installed beside the
// subhost binary (PREFIX/lib/subhost/plugins, or bin/plugins in a build
// tree).
func SearchPath(flagDirs []string, siteDir string, getenv func(string) string) []string {
	dirs := slices.Clone(flagDirs)
	if p := getenv(PathEnv); p != "" {
		for _, d := range strings.Split(p, ":") {
			if d != "" {
				dirs = append(dirs, d)
			}
		}
	}
	dirs = append(dirs, siteDir)
	dirs = append(dirs, layout.HelperDirs()...)
	for i, d := range dirs {
		dirs[i] = filepath.Clean(d)
	}
	return slices.Compact(dirs)
}

// Shipped finds one of subhost's own helper executables (not a stage),
// such as subhost-monitor: only in the directories installed beside the
// subhost binary, never in a site's or the command line's, and only if it
// passes the rule for executables root runs (package trust).
func Shipped(name string) (string, error) {
	var last error = fmt.Errorf("%s: cannot tell where subhost is installed", name)
	for _, d := range layout.HelperDirs() {
		p := filepath.Join(filepath.Clean(d), name)
		f, err := trust.Open(p, "helper")
		if err != nil {
			last = err
			continue
		}
		f.Close()
		return p, nil
	}
	return "", last
}

// Resolve finds a stage plugin by name (the first directory that has it)
// or takes an absolute path as is.
func Resolve(dirs []string, name string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	if !pluginName.MatchString(name) || slices.Contains(notPlugins, name) {
		return "", sdk.Invalidf("stage plugin name %q is not valid", name)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", sdk.Invalidf("unknown stage plugin %q: not found in %s", name, strings.Join(dirs, ":"))
}

// Available lists every plugin in dirs, the first of each name winning,
// as name → path.
func Available(dirs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			name := e.Name()
			if _, seen := out[name]; seen || !pluginName.MatchString(name) || slices.Contains(notPlugins, name) {
				continue
			}
			if fi, err := os.Stat(filepath.Join(d, name)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				out[name] = filepath.Join(d, name)
			}
		}
	}
	return out, nil
}
