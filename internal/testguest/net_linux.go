package testguest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Netns creates a throwaway network namespace name (/run/netns/name) with
// lo up and bridge br0 up, cidr on br0 when not empty; deleted when the
// test ends. Every address a test uses must be in 198.18.0.0/15.
func Netns(t testing.TB, name, cidr string) string {
	t.Helper()
	ip(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("testguest: ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
		}
	})
	ip(t, "-n", name, "link", "set", "lo", "up")
	Bridge(t, name, "br0", cidr)
	return name
}

// Bridge adds another bridge to a namespace made by Netns, up, with cidr
// on it when not empty. It goes when the namespace does.
func Bridge(t testing.TB, ns, bridge, cidr string) {
	t.Helper()
	ip(t, "-n", ns, "link", "add", bridge, "type", "bridge")
	ip(t, "-n", ns, "link", "set", bridge, "up")
	if cidr != "" {
		ip(t, "-n", ns, "addr", "add", cidr, "dev", bridge)
	}
}

// NetnsPath is the bind mount of a namespace made by Netns, for
// nsenter --net=PATH.
func NetnsPath(name string) string { return "/run/netns/" + name }

func ip(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testguest: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
}
