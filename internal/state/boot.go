package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/subhost/subhost/internal/atomicfile"
	"github.com/subhost/subhost/internal/bootid"
	"github.com/subhost/subhost/internal/fdlock"
	"github.com/subhost/subhost/internal/mountinfo"
)

// The state root is meant to be on a tmpfs (/run), which a reboot of the
// host empties: what it records (mounts, loop devices, namespaces,
// processes) does not outlive the kernel either. Where /run is a disk
// file system, the root survives the reboot, and with it states whose
// PIDs and start times name whatever processes the new boot gave those
// numbers to. So the root keeps the boot ID of the kernel that last used
// it, and the first operation of a new boot empties it, as a tmpfs would
// have been.

// bootIDFile holds, in the state root, the boot ID of the kernel that
// last used the root.
const bootIDFile = ".boot_id"

// bootID is the running kernel's boot ID, "" where it cannot be read.
var bootID = bootid.Current

// fromEarlierBoot reports whether something saved with boot ID id was
// saved before the host's last reboot (bootid.Earlier).
var fromEarlierBoot = bootid.Earlier

// ForgetEarlierBoot empties root if the kernel that last used it was not
// the running one, and records the running one's boot ID. A root without
// a recorded boot ID (made by an older subhost, whose subhosts may be
// running) is left as it is, as is one holding a state that may be this
// boot's (anyOfThisBoot). Mount points below root are left alone:
// nothing a subhost mounted there survived the reboot, so one is this
// boot's.
func ForgetEarlierBoot(root string) error {
	id := bootID()
	if id == "" {
		return nil
	}
	path := filepath.Join(root, bootIDFile)
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == id {
		return nil // the usual case: one small read
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	// One process at a time decides, under a lock on the root directory
	// itself (a lock file would be emptied away with the rest).
	dir, err := os.Open(root)
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := fdlock.Exclusive(dir); err != nil {
		return fmt.Errorf("lock %s: %w", root, err)
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil && strings.TrimSpace(string(b)) == id:
		return nil // another process did it meanwhile
	case err == nil && anyOfThisBoot(root):
		// A subhost booted since by a subhost that records no boot ID
		// (a downgrade, then an upgrade): its state and its stages'
		// files cannot be told from the earlier boot's. Keep them all;
		// Load still forgets the processes of each state stamped with
		// the earlier boot.
	case err == nil:
		if err := emptyRoot(root); err != nil {
			return fmt.Errorf("forget the subhosts of the host's last boot in %s: %w", root, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return atomicfile.Replace(path, []byte(id+"\n"), 0o600)
}

// anyOfThisBoot reports whether a subhost's state in root may be this
// boot's: one that records no boot ID, or this boot's.
func anyOfThisBoot(root string) bool {
	names, _ := List(root)
	for _, n := range names {
		data, err := os.ReadFile(Dir{Root: root, Name: n}.statePath())
		if err != nil {
			continue
		}
		var s struct {
			BootID string `json:"boot_id"`
		}
		if json.Unmarshal(data, &s) == nil && !fromEarlierBoot(s.BootID) {
			return true
		}
	}
	return false
}

// emptyRoot removes everything in root but its boot ID and the entries
// that hold a mount point.
func emptyRoot(root string) error {
	mounts, err := mountinfo.Self()
	if err != nil {
		return err
	}
	holdsMount := func(path string) bool {
		for _, m := range mounts {
			if m.Mountpoint == path || strings.HasPrefix(m.Mountpoint, path+"/") {
				return true
			}
		}
		return false
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		path := filepath.Join(root, e.Name())
		if e.Name() == bootIDFile || holdsMount(path) {
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
