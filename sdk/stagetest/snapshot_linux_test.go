package stagetest

import "testing"

func TestNetnsSetUpIsNotALeakButWhatIsOnItIs(t *testing.T) {
	for _, tc := range []struct {
		root, mountpoint, fstype string
		setUp                    bool
	}{
		{"/run/netns", "/run/netns", "ext4", true}, // /run on the root filesystem
		{"/netns", "/run/netns", "tmpfs", true},    // /run a tmpfs of its own
		{"/", "/run/netns", "tmpfs", false},        // a tmpfs mounted there is an object
		{"net:[4026532281]", "/run/netns/web1", "nsfs", false},
		{"/run/netns", "/run/netns/x", "ext4", false},
		{"/srv/netns", "/srv/netns", "ext4", false},
	} {
		if got := isNetnsSetUp(tc.root, tc.mountpoint, tc.fstype); got != tc.setUp {
			t.Errorf("isNetnsSetUp(%q, %q, %q) = %v, want %v", tc.root, tc.mountpoint, tc.fstype, got, tc.setUp)
		}
	}
}
