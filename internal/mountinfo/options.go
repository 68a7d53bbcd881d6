package mountinfo

import "strings"

// SharedGroup is the peer group of a shared mount, "" for none.
func (e Entry) SharedGroup() string { return e.optional("shared:") }

// MasterGroup is the peer group a slave mount receives from, "" for none.
func (e Entry) MasterGroup() string { return e.optional("master:") }

func (e Entry) optional(prefix string) string {
	for _, o := range e.Optional {
		if g, ok := strings.CutPrefix(o, prefix); ok {
			return g
		}
	}
	return ""
}

// SuperOptions splits the superblock options into key and value pairs,
// in order (an overlay repeats "lowerdir+"). The kernel escapes commas
// inside values, so splitting at commas is exact.
func (e Entry) SuperOptions() [][2]string {
	var out [][2]string
	for _, o := range strings.Split(e.Super, ",") {
		k, v, _ := strings.Cut(o, "=")
		out = append(out, [2]string{k, unescape(v)})
	}
	return out
}

// Option returns the last value of a superblock option, and whether it
// is there.
func (e Entry) Option(key string) (string, bool) {
	v, ok := "", false
	for _, kv := range e.SuperOptions() {
		if kv[0] == key {
			v, ok = kv[1], true
		}
	}
	return v, ok
}

// OverlayLayers returns an overlay's lower, upper and work directories as
// mountinfo shows them: "lowerdir+=" once per layer when the layers were
// given one by one, or "lowerdir=a:b" (colons inside a path escaped as
// "\:").
func (e Entry) OverlayLayers() (lowers []string, upper, work string) {
	for _, kv := range e.SuperOptions() {
		switch kv[0] {
		case "lowerdir+":
			lowers = append(lowers, kv[1])
		case "lowerdir":
			lowers = append(lowers, splitLowerdir(kv[1])...)
		case "upperdir":
			upper = kv[1]
		case "workdir":
			work = kv[1]
		}
	}
	return lowers, upper, work
}

// splitLowerdir splits a legacy lowerdir= list at unescaped colons; "::"
// (data-only layers follow) is a separator too.
func splitLowerdir(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case s[i] == ':':
			if cur.Len() > 0 {
				out = append(out, cur.String())
			}
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
