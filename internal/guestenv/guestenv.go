// Package guestenv is the environment every process subhost starts inside
// a guest begins with: its PID 1, and what `subhost enter` runs. It
// imports nothing, so that the guest's small static init can use it.
package guestenv

// Path is the guest's PATH, Debian's default for root.
const Path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Base is the whole environment of a process started in a guest:
// container=subhost (the systemd container-interface convention guest
// scripts test), PATH, TERM and root's HOME.
func Base(term string) []string {
	if term == "" {
		term = "linux"
	}
	return []string{"container=subhost", "PATH=" + Path, "TERM=" + term, "HOME=/root"}
}
