package guestroot

import "fmt"

// SymlinkError reports a symlink where the host needs a real directory.
type SymlinkError struct {
	// Path is the guest path of the symlink, e.g. "/proc".
	Path string
}

func (e *SymlinkError) Error() string {
	return fmt.Sprintf("%s in the guest root is a symlink", e.Path)
}

// NotDirError reports a non-directory where the host needs a directory.
type NotDirError struct {
	Path string
}

func (e *NotDirError) Error() string {
	return fmt.Sprintf("%s in the guest root is not a directory", e.Path)
}

// OutsideError reports a descriptor that resolved outside the root. It
// should be impossible; it is checked anyway because being wrong here
// means writing to the host.
type OutsideError struct {
	Path, Root, Got string
}

func (e *OutsideError) Error() string {
	return fmt.Sprintf("%s resolved to %q, outside the guest root %q", e.Path, e.Got, e.Root)
}
