package fsdetect

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// image returns size zero bytes with each write applied at its offset.
func image(size int, writes ...write) []byte {
	b := make([]byte, size)
	for _, w := range writes {
		copy(b[w.off:], w.data)
	}
	return b
}

type write struct {
	off  int
	data []byte
}

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

var (
	extMagic   = write{1024 + 56, le16(0xEF53)}
	bootSig    = write{510, []byte{0x55, 0xAA}}
	shortJump  = write{0, []byte{0xEB, 0x3C, 0x90}}
	sector512  = write{11, le16(512)}
	fat16Type  = write{54, []byte("FAT16   ")}
	fat32Type  = write{82, []byte("FAT32   ")}
	btrfsMagic = write{0x10040, []byte("_BHRfS_M")}
)

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		// The ext family, told apart by feature flags the magic ignores.
		{"ext2", image(4096, extMagic), "ext4"},
		{"ext3 (has_journal)", image(4096, extMagic, write{1024 + 0x5C, le32(0x4)}), "ext4"},
		{"ext4 (extents, 64bit)", image(4096, extMagic, write{1024 + 0x5C, le32(0x4)}, write{1024 + 0x60, le32(0x40 | 0x80)}), "ext4"},
		{"ext in a large image", image(0x10048+8, extMagic), "ext4"},
		{"xfs", image(4096, write{0, []byte("XFSB")}), "xfs"},
		{"xfs, magic alone", []byte("XFSB"), "xfs"},
		{"btrfs", image(0x10048, btrfsMagic), "btrfs"},
		{"btrfs in a large image", image(0x10048+8, btrfsMagic), "btrfs"},
		{"f2fs", image(2048, write{1024, le32(0xF2F52010)}), "f2fs"},
		{"vfat FAT32", image(512, shortJump, sector512, fat32Type, bootSig), "vfat"},
		{"vfat FAT16", image(4096, shortJump, sector512, fat16Type, bootSig), "vfat"},
		{"vfat FAT12, near jump, 4096-byte sectors", image(512, write{0, []byte{0xE9, 0, 0}}, write{11, le16(4096)}, write{54, []byte("FAT12   ")}, bootSig), "vfat"},

		// No filesystem.
		{"empty", nil, ""},
		{"zeros", image(0x10048 + 8), ""},
		{"bare MBR", image(4096, bootSig, write{446 + 4, []byte{0x83}}), ""},
		{"ext magic cut short", image(1024+57, extMagic), ""},
		{"ext magic at the wrong offset", image(4096, write{56, le16(0xEF53)}), ""},
		{"btrfs magic cut short", image(0x10040+7, write{0x10040, []byte("_BHRfS_")}), ""},
		{"xfs lower case", image(4096, write{0, []byte("xfsb")}), ""},
		{"FAT without the boot signature", image(512, shortJump, sector512, fat32Type), ""},
		{"FAT without a jump", image(512, sector512, fat32Type, bootSig), ""},
		{"FAT with a bad sector size", image(512, shortJump, write{11, le16(300)}, fat32Type, bootSig), ""},
		{"FAT without its type string", image(512, shortJump, sector512, bootSig), ""},
		{"FAT boot sector cut short", image(511, shortJump, sector512, fat32Type), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Detect(bytes.NewReader(c.data)); got != c.want {
				t.Errorf("Detect = %q, want %q", got, c.want)
			}
		})
	}
}

// TestDetectMkfs checks images mkfs made, where it is installed.
func TestDetectMkfs(t *testing.T) {
	for _, c := range []struct {
		mkfs string
		args []string
		want string
	}{
		{"mkfs.ext2", []string{"-q", "-F"}, "ext4"},
		{"mkfs.ext3", []string{"-q", "-F"}, "ext4"},
		{"mkfs.ext4", []string{"-q", "-F"}, "ext4"},
		{"mkfs.xfs", []string{"-q", "-f"}, "xfs"},
		{"mkfs.btrfs", []string{"-q", "-f"}, "btrfs"},
		{"mkfs.f2fs", []string{"-q", "-f"}, "f2fs"},
		{"mkfs.vfat", nil, "vfat"},
	} {
		t.Run(c.mkfs, func(t *testing.T) {
			mkfs, err := exec.LookPath(c.mkfs)
			if err != nil {
				t.Skipf("%s is not installed", c.mkfs)
			}
			path := filepath.Join(t.TempDir(), "fs.img")
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, 320<<20); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(mkfs, append(c.args, path)...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", c.mkfs, err, out)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := Detect(f); got != c.want {
				t.Errorf("Detect = %q, want %q", got, c.want)
			}
		})
	}
}
