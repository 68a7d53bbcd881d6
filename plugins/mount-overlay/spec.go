package main

import (
	"path/filepath"
	"strings"

	"github.com/subhost/subhost/internal/idrange"
	"github.com/subhost/subhost/sdk"
)

// spec is what the config asks for, checked as strings only: no file is
// looked at, so it is safe for Validate and testable without root.
type spec struct {
	name string
	// home is the subhost's directory, $SUBHOST/NAME, cleaned.
	home string
	// bases are the overlay's lower directories, uppermost first, as
	// BASE lists them; none means live is an rbind of root.
	bases []string
	// baseWhere names where BASE was set, for error messages.
	baseWhere string
	// unprivileged: PRIVATE_USERS asks for a user namespace, so the
	// overlay is assembled inside it (userns_linux.go).
	unprivileged bool
}

// optionChars are the characters that would let a path inject or split
// overlay mount options (",upperdir=...", "lowerdir=a:b"), or that
// mountinfo escapes: such paths are refused even though the layers are
// handed to the kernel as file descriptors, so that no path ever needs
// quoting and mountinfo can be read back unambiguously.
const optionChars = ",:=\\"

// badPathChar returns the first character of p that may not appear in a
// path used for an overlay, or "".
func badPathChar(p string) string {
	for _, r := range p {
		if strings.ContainsRune(optionChars, r) || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f' || r < ' ' || r == 0x7f {
			return string(r)
		}
	}
	return ""
}

// parseSpec reads the subhost's HOME, name and BASE.
func parseSpec(s sdk.Subhost) (spec, error) {
	sp, err := parseHome(s)
	if err != nil {
		return sp, err
	}
	if c := badPathChar(sp.home); c != "" {
		return sp, sdk.Invalidf("home %q: contains %q, which may not appear in an overlay's paths", s.Home, c)
	}
	if c := badPathChar(s.Name); c != "" {
		return sp, sdk.Invalidf("subhost name %q: contains %q, which may not appear in an overlay's paths", s.Name, c)
	}
	if ids, err := idrange.Parse(s.Scalar("PRIVATE_USERS")); err == nil {
		sp.unprivileged = ids.Enabled
	}
	// BASE is a bash scalar, "/a" or "/a:/b"; an array's words are taken
	// as more of the same list.
	for _, word := range s.Array("BASE") {
		if word == "" {
			continue
		}
		for _, b := range strings.Split(word, ":") {
			switch {
			case b == "":
				return sp, sdk.Invalidf("%s: BASE %q: empty directory in the list", sp.baseWhere, word)
			case !filepath.IsAbs(b):
				return sp, sdk.Invalidf("%s: BASE %q: not an absolute path", sp.baseWhere, b)
			}
			if c := badPathChar(b); c != "" {
				return sp, sdk.Invalidf("%s: BASE %q: contains %q, which may not appear in an overlay's paths", sp.baseWhere, b, c)
			}
			sp.bases = append(sp.bases, filepath.Clean(b))
		}
	}
	return sp, nil
}

// parseHome reads the subhost's name and HOME only: all Down needs, so
// that Down works whatever the rest of the config has become.
func parseHome(s sdk.Subhost) (spec, error) {
	sp := spec{name: s.Name, home: s.Home, baseWhere: s.Where("BASE")}
	switch {
	case s.Name == "" || s.Name == "." || s.Name == ".." || strings.ContainsRune(s.Name, '/'):
		return sp, sdk.Invalidf("subhost name %q: not usable as a file name", s.Name)
	case s.Home == "":
		return sp, sdk.Invalidf("subhost %q: no home directory given", s.Name)
	case !filepath.IsAbs(s.Home):
		return sp, sdk.Invalidf("home %q: not an absolute path", s.Home)
	}
	sp.home = filepath.Clean(s.Home)
	return sp, nil
}

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// overlaps reports whether one of a and b is inside the other.
func overlaps(a, b string) bool { return within(a, b) || within(b, a) }

// commonDir is the deepest directory holding both a and b (clean
// absolute paths).
func commonDir(a, b string) string {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	n := 0
	for n < len(as) && n < len(bs) && as[n] == bs[n] {
		n++
	}
	if c := strings.Join(as[:n], "/"); c != "" {
		return c
	}
	return "/"
}
