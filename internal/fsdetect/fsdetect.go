package fsdetect

import (
	"bytes"
	"encoding/binary"
	"io"
)

// Known lists what Detect knows, for error messages.
const Known = "ext2/3/4, XFS, Btrfs, F2FS or FAT"

// Detect names the filesystem at the start of r from its superblock
// magic: "ext4", "xfs", "btrfs", "f2fs" or "vfat", or "" when it knows
// none. The ext family is named ext4: the ext4 driver mounts ext2 and
// ext3 too.
func Detect(r io.ReaderAt) string {
	at := func(off int64, n int) []byte {
		b := make([]byte, n)
		if m, _ := r.ReadAt(b, off); m != n {
			return nil
		}
		return b
	}
	// ext2/3/4: s_magic at byte 56 of the superblock at 1024.
	if b := at(1024+56, 2); b != nil && binary.LittleEndian.Uint16(b) == 0xEF53 {
		return "ext4"
	}
	if b := at(0, 4); bytes.Equal(b, []byte("XFSB")) {
		return "xfs"
	}
	if b := at(0x10040, 8); bytes.Equal(b, []byte("_BHRfS_M")) {
		return "btrfs"
	}
	if b := at(1024, 4); b != nil && binary.LittleEndian.Uint32(b) == 0xF2F52010 {
		return "f2fs"
	}
	if b := at(0, 512); b != nil && isFAT(b) {
		return "vfat"
	}
	return ""
}

// isFAT recognises a FAT boot sector: a jump, a sane sector size, the
// boot signature and the "FAT" type string mkfs.vfat writes. A bare MBR
// has the signature too, but not the rest.
func isFAT(b []byte) bool {
	if !(b[0] == 0xEB && b[2] == 0x90 || b[0] == 0xE9) || b[510] != 0x55 || b[511] != 0xAA {
		return false
	}
	switch binary.LittleEndian.Uint16(b[11:]) {
	case 512, 1024, 2048, 4096:
	default:
		return false
	}
	return bytes.HasPrefix(b[54:], []byte("FAT")) || bytes.HasPrefix(b[82:], []byte("FAT32"))
}
