// Package atomicfile replaces a file's content so that a reader sees the
// old or the new content, never a mix, whatever instant the writer dies.
package atomicfile

import (
	"os"
	"path/filepath"
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
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return SyncDir(dir)
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
