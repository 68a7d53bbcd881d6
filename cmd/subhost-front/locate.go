package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/subhost/subhost/internal/layout"
	"github.com/subhost/subhost/internal/trust/rule"
)

// locateCLI finds the full CLI where subhost's helpers are installed
// beside this program (layout.HelperDirs, as pluginhost.Shipped finds the
// others), and only if it and its directory keep package trust's rule:
// it runs as root.
func locateCLI() (string, error) {
	dirs := layout.HelperDirs()
	if len(dirs) == 0 {
		return "", fmt.Errorf("find the full CLI %s: cannot tell where this program is", layout.CLI)
	}
	var problem error // one that is there but may not be run
	for _, d := range dirs {
		p := filepath.Join(d, layout.CLI)
		err := trusted(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, os.ErrNotExist) && problem == nil {
			problem = err
		}
	}
	if problem != nil {
		return "", problem
	}
	return "", fmt.Errorf("the full CLI %s is not in %s: reinstall subhost", layout.CLI, strings.Join(dirs, " or "))
}

// trusted checks the rule on path, which must be a regular file, and on
// its directory.
func trusted(path string) error {
	for _, p := range []string{filepath.Dir(path), path} {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			return fmt.Errorf("the full CLI: %w", &os.PathError{Op: "stat", Path: p, Err: err})
		}
		if p == path && st.Mode&syscall.S_IFMT != syscall.S_IFREG {
			return fmt.Errorf("the full CLI %s is not a regular file", p)
		}
		if problem := rule.Problem(&st); problem != "" {
			return fmt.Errorf("the full CLI %s %s", p, problem)
		}
	}
	return nil
}
