package guestroot

import (
	"fmt"
	"strings"
)

// splitGuestPath turns a guest path ("/dev/pts", "dev/pts") into its
// components. It refuses "..", "." and empty components: the host only
// ever names fixed paths inside a guest, so any of those is a bug.
func splitGuestPath(p string) ([]string, error) {
	t := strings.Trim(p, "/")
	if t == "" {
		return nil, fmt.Errorf("guest path %q: names the root itself", p)
	}
	parts := strings.Split(t, "/")
	for _, c := range parts {
		switch c {
		case "", ".", "..":
			return nil, fmt.Errorf("guest path %q: %q is not allowed as a component", p, c)
		}
	}
	return parts, nil
}

// within reports whether p is root or below it; both are clean absolute
// paths as the kernel prints them (readlink of /proc/self/fd/N).
func within(root, p string) bool {
	if root == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == root || strings.HasPrefix(p, root+"/")
}
