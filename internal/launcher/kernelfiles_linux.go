package launcher

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/guestroot"
	"github.com/subhost/subhost/internal/mountfd"
)

// protectKernelFiles makes the guest's /proc/sys read-only but for its
// own namespaces' entries, makes the other host-wide files of /proc
// read-only and masks those that show the host's kernel (kernelfiles.go
// lists them with why). Call it on the guest's fresh /proc, /sys and
// /dev. Every mount is made through descriptors opened inside the root
// without following any symlink. A file this kernel lacks is skipped.
//
// A guest with CAP_SYS_ADMIN can undo all of this (unmount, or mount a
// fresh proc elsewhere): it keeps the guest's own scripts, such as
// Debian's procps applying /etc/sysctl.conf at boot, from retuning the
// host by accident. Only a user namespace (PRIVATE_USERS) stops a
// determined guest.
func protectKernelFiles(root *guestroot.Root) error {
	writable, err := cloneWritableSysctls(root)
	defer func() {
		for _, w := range writable {
			w.d.Close()
		}
	}()
	if err != nil {
		return err
	}
	if err := overmountSelf(root, "/proc/sys", true); err != nil {
		return err
	}
	for _, w := range writable {
		if err := attachAt(root, w.d, w.path); err != nil {
			return err
		}
	}
	for _, f := range readOnlyKernelFiles {
		if err := overmountSelf(root, f.path, false); err != nil {
			return err
		}
	}
	return maskKernelFiles(root)
}

type detachedAt struct {
	d    *os.File
	path string
}

// cloneWritableSysctls clones each writable /proc/sys entry from the
// guest's still writable proc, to put back over the read-only one.
func cloneWritableSysctls(root *guestroot.Root) ([]detachedAt, error) {
	var out []detachedAt
	for _, p := range writableSysctls {
		f, err := root.OpenBeneath(p, unix.O_PATH)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return out, err
		}
		d, err := mountfd.Clone(f, p, mountfd.Options{})
		f.Close()
		if err != nil {
			return out, err
		}
		out = append(out, detachedAt{d, p})
	}
	return out, nil
}

// overmountSelf mounts a read-only clone of what is at path over it
// (recursive: with the mounts below it).
func overmountSelf(root *guestroot.Root, path string, recursive bool) error {
	f, err := root.OpenBeneath(path, unix.O_PATH)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := mountfd.Clone(f, path+" (read-only)", mountfd.Options{Set: unix.MOUNT_ATTR_RDONLY, Recursive: recursive})
	if err != nil {
		return err
	}
	defer d.Close()
	return root.Attach(d, f, path)
}

// attachAt mounts d on path, opened afresh (so that it is the entry of
// the mount now on top there).
func attachAt(root *guestroot.Root, d *os.File, path string) error {
	f, err := root.OpenBeneath(path, unix.O_PATH)
	if err != nil {
		return err
	}
	defer f.Close()
	return root.Attach(d, f, path)
}

// maskKernelFiles puts the guest's /dev/null over each masked file and
// an empty read-only tmpfs over each masked directory.
func maskKernelFiles(root *guestroot.Root) error {
	null, err := root.OpenBeneath("/dev/null", unix.O_PATH)
	if err != nil {
		return err
	}
	defer null.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(null.Fd()), &st); err != nil {
		return fmt.Errorf("/dev/null in the guest: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		return errors.New("/dev/null in the guest is not the null device")
	}
	for _, m := range maskedKernelFiles {
		if err := mask(root, null, m.path); err != nil {
			return err
		}
	}
	return nil
}

func mask(root *guestroot.Root, null *os.File, path string) error {
	f, err := root.OpenBeneath(path, unix.O_PATH)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var d *os.File
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		d, err = mountfd.EmptyReadOnly(path)
	} else {
		d, err = mountfd.Clone(null, "/dev/null", mountfd.Options{})
	}
	if err != nil {
		return err
	}
	defer d.Close()
	return root.Attach(d, f, path)
}
