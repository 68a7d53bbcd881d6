package sdk

// MaxNameLen is the longest subhost name: it becomes a prefix of host
// interface names and part of paths.
const MaxNameLen = 32

// ValidName checks a subhost name before any path is built from it (the
// runner checks every name it is given; a stage may check again, with the
// same rule):
// letters, digits, '-' and '_', starting with a letter or digit, at most
// MaxNameLen characters, and not one of the few names cgroups reserve.
func ValidName(name string) error {
	if name == "" {
		return Invalidf("subhost name is empty")
	}
	for _, c := range name {
		if !isNameChar(c) {
			return Invalidf("subhost name %q: only letters, digits, \"-\" and \"_\" are allowed", name)
		}
	}
	if len(name) > MaxNameLen {
		return Invalidf("subhost name %q is too long (%d characters, at most %d)", name, len(name), MaxNameLen)
	}
	if c := name[0]; c == '-' || c == '_' {
		return Invalidf("subhost name %q must start with a letter or digit", name)
	}
	// A subhost's name also names its cgroups, beside the control files
	// of the cgroup that holds them.
	switch name {
	case "tasks", "notify_on_release", "release_agent":
		return Invalidf("subhost name %q is reserved (it is the name of a cgroup control file)", name)
	}
	return nil
}

func isNameChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
