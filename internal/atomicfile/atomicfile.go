// Package atomicfile replaces a file's content so that a reader sees the
// old or the new content, never a mix, whatever instant the writer dies.
package atomicfile

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Write writes data to a temporary file in path's directory (mode perm),
// syncs it, renames it over path, and syncs the directory, so that the
// new content also survives a crash of the host: for files that outlive
// it (configuration).
func Write(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, true)
}

// Replace is Write without the syncs: atomic for every reader and against
// the writer being killed at any instant (the rename is), not durable
// across a crash of the host. For state that describes what lives only as
// long as the running kernel (mounts, processes, namespaces), where a
// power loss makes the old and the new content equally stale; each sync
// costs a disk flush where /run is not a tmpfs.
func Replace(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, false)
}

func write(path string, data []byte, perm os.FileMode, durable bool) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if !durable {
		if exchanged(tmp.Name(), path) {
			// The temporary name now holds the old content.
			os.Remove(tmp.Name())
			return nil
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return SyncDir(dir)
}

// exchanged swaps tmp and an existing regular file at path in one step
// (renameat2 RENAME_EXCHANGE), which is as atomic for readers as a rename
// over path. It reports false where there is nothing to swap with or the
// file system cannot swap; the caller then renames.
//
// Why not always rename: ext4 writes a file renamed over another out at
// once, so that a crash leaves the new content rather than an empty file
// (its auto_da_alloc), and the next replacement frees those blocks. Where
// /run is on ext4 mounted with discard and without a journal, each freed
// block is a discard the writer waits for: about 0.2 ms per save here,
// with a boot saving its state about ten times. Swapped, the short-lived
// content is never written out, and deleting it frees nothing.
func exchanged(tmp, path string) bool {
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	return unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_EXCHANGE) == nil
}

// SyncDir makes a rename (or a new file) in dir durable: without it, a
// crash can leave the directory entry as it was before.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
