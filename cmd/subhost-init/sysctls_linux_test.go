package main

import "testing"

func TestIsSysctlHole(t *testing.T) {
	for mp, want := range map[string]bool{
		"/proc/sys/kernel/shmmax":   true,
		"/proc/sys/kernel/hostname": true,
		"/proc/sys/fs/mqueue":       true,
		"/proc/sys":                 false, // the read-only one
		"/proc/sys/net":             false, // the network scripts' stop writes there
		"/proc/sys/net/ipv4":        false,
		"/proc/sys/network":         true,
		"/proc/keys":                false,
		"/proc/sysrq-trigger":       false,
	} {
		if got := isSysctlHole(mp); got != want {
			t.Errorf("isSysctlHole(%q) = %v, want %v", mp, got, want)
		}
	}
}
