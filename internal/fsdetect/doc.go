// Package fsdetect names the filesystem in a disk image or a partition
// from its superblock magic, as blkid would, so that a stage can mount it
// with the right type without running blkid. It knows the filesystems a
// subhost's root may be: the ext family, XFS, Btrfs, F2FS and FAT.
//
// The bytes come from a tenant's image: Detect only compares a few fixed
// offsets, and a short or empty reader is "no filesystem", not an error.
package fsdetect
