package main

import (
	"errors"
	"io"

	"github.com/subhost/subhost/internal/fsdetect"
)

// detectFS names the filesystem an image holds, for the filesystems a
// subhost image may sensibly be: the ext family (mounted with the ext4
// driver, which reads ext2 and ext3 too), XFS and Btrfs.
func detectFS(r io.ReaderAt) (string, error) {
	switch fs := fsdetect.Detect(r); fs {
	case "ext4", "xfs", "btrfs":
		return fs, nil
	}
	return "", errors.New("no ext2/3/4, XFS or Btrfs filesystem in it (the image must be a bare filesystem, no partition table)")
}
