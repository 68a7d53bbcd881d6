package seccompguard

import (
	"strings"
	"testing"

	"github.com/subhost/subhost/internal/mountinfo"
)

// A root whose file system shows an anonymous device number (btrfs) is
// the guest's own when its mount's source is a loop device, not when it
// is a host disk (a bind of a host directory on a btrfs host).
func TestLoopSource(t *testing.T) {
	table := `30 1 0:41 / / rw,relatime - btrfs /dev/loop3 rw,subvolid=5,subvol=/
31 1 0:42 / /srv rw,relatime - btrfs /dev/sda2 rw,subvolid=5,subvol=/
`
	mounts, err := mountinfo.Parse(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	if !loopSource(mountinfo.TopAt(mounts, "/")) {
		t.Error("a btrfs root on /dev/loop3 is not the guest's own")
	}
	if loopSource(mountinfo.TopAt(mounts, "/srv")) || loopSource(nil) {
		t.Error("a host disk's btrfs, or no mount, taken for the guest's own")
	}
}
