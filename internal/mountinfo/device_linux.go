package mountinfo

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Device is the block device the file system mounted by m is on. It is
// the device number of the mount table, except for a file system that
// shows an anonymous one there (0:NN: btrfs does, not the device it was
// mounted from): then the block device m's source names, when it does.
func (m *Entry) Device() (major, minor uint32) {
	if m.Major != 0 || !strings.HasPrefix(m.Source, "/dev/") {
		return m.Major, m.Minor
	}
	var st unix.Stat_t
	if unix.Stat(m.Source, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return m.Major, m.Minor
	}
	return unix.Major(st.Rdev), unix.Minor(st.Rdev)
}
