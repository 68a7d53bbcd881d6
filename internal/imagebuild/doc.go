// Package imagebuild makes subhost disk images: `subhost image build`.
//
// Build writes a sparse raw image holding an ext4 filesystem populated
// from a directory, either as the whole image (table "none", for
// DISKS=( vda:0:IMAGE )) or as partition 1 of an MBR or GPT disk (aligned
// at 1 MiB and spanning the rest). The tables are written in Go
// (parttable); the filesystem by `mkfs.ext4 -d DIR -E offset=BYTES`, so
// nothing is mounted and no loop device is used.
//
// The image is built under a temporary name beside the target and renamed
// into place only when complete, so a failure leaves no partial image and
// an existing image is replaced (with Force) only by a finished one. The
// image is created mode 0600: it holds a whole root filesystem.
package imagebuild
