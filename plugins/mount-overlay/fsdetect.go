package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
)

// detectFS names the filesystem an image holds from its superblock
// magic, as blkid would, for the filesystems a subhost image may sensibly
// be: the ext family (mounted with the ext4 driver, which reads ext2 and
// ext3 too), XFS and Btrfs.
func detectFS(r io.ReaderAt) (string, error) {
	var magic [8]byte
	// ext2/3/4: s_magic 0xEF53 at byte 56 of the superblock at 1024.
	if n, _ := r.ReadAt(magic[:2], 1024+56); n == 2 && binary.LittleEndian.Uint16(magic[:2]) == 0xEF53 {
		return "ext4", nil
	}
	if n, _ := r.ReadAt(magic[:4], 0); n == 4 && bytes.Equal(magic[:4], []byte("XFSB")) {
		return "xfs", nil
	}
	if n, _ := r.ReadAt(magic[:8], 0x10040); n == 8 && bytes.Equal(magic[:8], []byte("_BHRfS_M")) {
		return "btrfs", nil
	}
	return "", errors.New("no ext2/3/4, XFS or Btrfs filesystem in it (the image must be a bare filesystem, no partition table)")
}
