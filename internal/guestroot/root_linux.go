package guestroot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// Root is an opened guest root directory.
type Root struct {
	dir *os.File // O_PATH directory
	// path is where the kernel says dir is (readlink of /proc/self/fd/N),
	// the prefix every descriptor inside the root must have.
	path string
}

// Open opens the guest root at hostPath, a path the host chose (the
// mount stage's mount point), not one inside the guest.
func Open(hostPath string) (*Root, error) {
	f, err := os.OpenFile(hostPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open guest root: %w", err)
	}
	real, err := kernelPath(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open guest root %q: %w", hostPath, err)
	}
	return &Root{dir: f, path: real}, nil
}

// Close closes the root's descriptor.
func (r *Root) Close() error { return r.dir.Close() }

// Path is the root's path as the kernel resolves it.
func (r *Root) Path() string { return r.path }

// File is the root's O_PATH directory descriptor.
func (r *Root) File() *os.File { return r.dir }

// Reopen opens the root's path again, so that r names whatever is mounted
// on it now (after CloneSelf, the new mount).
func (r *Root) Reopen() error {
	n, err := Open(r.path)
	if err != nil {
		return err
	}
	if n.path != r.path {
		n.Close()
		return fmt.Errorf("reopen guest root %q: now resolves to %q", r.path, n.path)
	}
	r.dir.Close()
	*r = *n
	return nil
}

// Inside checks, through /proc/self/fd, that f is the root or below it.
// guestPath names f in the error.
func (r *Root) Inside(f *os.File, guestPath string) error {
	got, err := kernelPath(f)
	if err != nil {
		return fmt.Errorf("%s: check it is inside the guest root: %w", guestPath, err)
	}
	if !within(r.path, got) {
		return &OutsideError{Path: guestPath, Root: r.path, Got: got}
	}
	return nil
}

// resolveFlags forbid every symlink (not only those leading out) and the
// /proc magic links, and keep each single-component step beneath its
// directory.
const resolveFlags = unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_BENEATH

// MountDir opens the directory at guestPath (e.g. "/proc", "/dev/pts")
// as an O_PATH descriptor to mount onto. Each component must be a real
// directory: a symlink is a *SymlinkError, whatever it points to, so a
// guest cannot redirect the host's mounts; a missing component is created
// with mode. The result is checked to be inside the root.
func (r *Root) MountDir(guestPath string, mode uint32) (*os.File, error) {
	parts, err := splitGuestPath(guestPath)
	if err != nil {
		return nil, err
	}
	dirfd := int(r.dir.Fd())
	cur := -1 // the descriptor we own, once we have stepped down
	defer func() {
		if cur >= 0 {
			unix.Close(cur)
		}
	}()
	for i, name := range parts {
		shown := "/" + strings.Join(parts[:i+1], "/")
		var st unix.Stat_t
		err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(err, unix.ENOENT):
			if err := unix.Mkdirat(dirfd, name, mode); err != nil && !errors.Is(err, unix.EEXIST) {
				return nil, fmt.Errorf("create %s in the guest root: %w", shown, err)
			}
		case err != nil:
			return nil, fmt.Errorf("%s in the guest root: %w", shown, err)
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			return nil, &SymlinkError{Path: shown}
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			return nil, &NotDirError{Path: shown}
		}
		// The lstat above only words the error; this open is what is
		// safe: it refuses a symlink swapped in since.
		next, err := unix.Openat2(dirfd, name, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: resolveFlags,
		})
		switch {
		case errors.Is(err, unix.ELOOP):
			return nil, &SymlinkError{Path: shown}
		case errors.Is(err, unix.ENOTDIR):
			return nil, &NotDirError{Path: shown}
		case err != nil:
			return nil, fmt.Errorf("open %s in the guest root: %w", shown, err)
		}
		if cur >= 0 {
			unix.Close(cur)
		}
		cur, dirfd = next, next
	}
	f := os.NewFile(uintptr(cur), r.path+"/"+strings.Join(parts, "/"))
	cur = -1
	if err := r.Inside(f, "/"+strings.Join(parts, "/")); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// InstallFile makes guestPath (e.g. "/sbin/subhost-init") a regular file
// holding content with mode, replacing what is there, but only when it
// differs: it reports whether it wrote. The directory is resolved inside
// the root by pathrs-lite and created when missing; the file is written to
// a temporary name created with O_EXCL|O_NOFOLLOW and renamed over the
// final name, so a symlink at the final name is replaced and never
// followed.
func (r *Root) InstallFile(guestPath string, content []byte, mode uint32) (bool, error) {
	parts, err := splitGuestPath(guestPath)
	if err != nil {
		return false, err
	}
	dirPath, base := path.Join(parts[:len(parts)-1]...), parts[len(parts)-1]
	var dir *os.File
	if dirPath == "" {
		dir, err = os.OpenFile(fdPath(r.dir), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	} else {
		dir, err = pathrs.MkdirAllHandle(r.dir, dirPath, 0o755)
	}
	if err != nil {
		if link := r.firstSymlink(parts[:len(parts)-1]); link != "" {
			return false, fmt.Errorf("install %s: %s, which does not lead to a directory inside the guest root", guestPath, link)
		}
		return false, fmt.Errorf("install %s: open /%s in the guest root: %w", guestPath, dirPath, err)
	}
	defer dir.Close()
	if err := r.Inside(dir, "/"+dirPath); err != nil {
		return false, err
	}
	dirfd := int(dir.Fd())
	if same, err := sameFile(dirfd, base, content, mode); err != nil {
		return false, fmt.Errorf("compare %s: %w", guestPath, err)
	} else if same {
		return false, nil
	}

	tmp := fmt.Sprintf(".%s.tmp-%d", base, os.Getpid())
	unix.Unlinkat(dirfd, tmp, 0) // a leftover of ours from a crash, or nothing
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false, fmt.Errorf("create a temporary file for %s: %w", guestPath, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	ok := false
	defer func() {
		if !ok {
			unix.Unlinkat(dirfd, tmp, 0)
		}
	}()
	_, err = f.Write(content)
	if err == nil {
		err = f.Chmod(os.FileMode(mode))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("write %s: %w", guestPath, err)
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, base); err != nil {
		return false, fmt.Errorf("rename into %s: %w", guestPath, err)
	}
	ok = true
	return true, nil
}

// firstSymlink names the first symlink on the way through parts, as
// `/sbin in the guest root is a symlink to "/etc"`, or returns "". It
// only words an error: it reads, never follows, each component.
func (r *Root) firstSymlink(parts []string) string {
	dirfd := int(r.dir.Fd())
	for i, name := range parts {
		shown := "/" + strings.Join(parts[:i+1], "/")
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return ""
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			buf := make([]byte, 4096)
			n, _ := unix.Readlinkat(dirfd, name, buf)
			return fmt.Sprintf("%s in the guest root is a symlink to %q", shown, buf[:max(n, 0)])
		}
		next, err := unix.Openat2(dirfd, name, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: resolveFlags,
		})
		if err != nil {
			return ""
		}
		defer unix.Close(next)
		dirfd = next
	}
	return ""
}

// sameFile reports whether name in dirfd is already a regular file owned
// by root with exactly that mode and content. A symlink, a FIFO or
// anything else is "not the same" (and will be replaced), never followed
// or blocked on.
func sameFile(dirfd int, name string, content []byte, mode uint32) (bool, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) {
		return false, nil
	}
	if err != nil {
		return false, nil // e.g. a socket: replace it
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o7777 != mode || st.Uid != 0 || st.Gid != 0 || st.Size != int64(len(content)) {
		return false, nil
	}
	// Chunk by chunk, into one small buffer: reading the whole file into a
	// growing slice cost more (allocations, page faults, copies) than the
	// reads themselves, on every boot.
	buf := make([]byte, 256<<10)
	off := 0
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if off+n > len(content) || !bytes.Equal(buf[:n], content[off:off+n]) {
				return false, nil
			}
			off += n
		}
		if err == io.EOF {
			return off == len(content), nil
		}
		if err != nil {
			return false, err
		}
	}
}

func fdPath(f *os.File) string {
	return fmt.Sprintf("/proc/self/fd/%d", f.Fd())
}
