package parttable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

// disk is an in-memory disk image.
type disk []byte

func (d disk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(d)) {
		return 0, errors.New("EOF")
	}
	n := copy(p, d[off:])
	if n < len(p) {
		return n, errors.New("EOF")
	}
	return n, nil
}

func (d disk) WriteAt(p []byte, off int64) (int, error) { return copy(d[off:], p), nil }

const MiB = 1 << 20

func mbrDisk(t *testing.T, size int64, parts ...Partition) disk {
	t.Helper()
	d := make(disk, size)
	if err := WriteMBR(d, size, parts); err != nil {
		t.Fatal(err)
	}
	return d
}

func gptDisk(t *testing.T, size int64, parts ...Partition) disk {
	t.Helper()
	d := make(disk, size)
	if err := WriteGPT(d, size, parts); err != nil {
		t.Fatal(err)
	}
	return d
}

// entry sets MBR (or EBR) entry i (0-3) of the sector at byte off.
func entry(d disk, off int64, i int, typ byte, lba, n uint32) {
	putMBREntry(d[off+446+16*int64(i):], typ, lba, n)
	d[off+510], d[off+511] = 0x55, 0xAA
}

func read(t *testing.T, d disk) (*Table, error) {
	t.Helper()
	return Read(d, int64(len(d)))
}

func TestMBRRoundTrip(t *testing.T) {
	d := mbrDisk(t, 8*MiB, Partition{Index: 1, Start: 1 * MiB, Size: 3 * MiB}, Partition{Index: 3, Start: 4 * MiB, Size: 4 * MiB, Type: "0x0c"})
	tab, err := read(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Kind != "mbr" || len(tab.Partitions) != 2 {
		t.Fatalf("table: %+v", tab)
	}
	p, err := tab.Partition(3)
	if err != nil || p.Start != 4*MiB || p.Size != 4*MiB || p.Type != "0x0c" {
		t.Errorf("partition 3: %+v %v", p, err)
	}
	_, err = tab.Partition(2)
	var npe *NoPartitionError
	if !errors.As(err, &npe) || err.Error() != "no partition 2 (it has 1, 3)" {
		t.Errorf("partition 2: %v", err)
	}
	for _, i := range []int{0, -1, 5, 1000} {
		if _, err := tab.Partition(i); !errors.As(err, &npe) {
			t.Errorf("partition %d: %v", i, err)
		}
	}
}

func TestGPTRoundTrip(t *testing.T) {
	size := int64(16 * MiB)
	start, end := GPTUsable(size)
	if start != 34*512 || end != (size/512-33)*512 {
		t.Errorf("GPTUsable = %d, %d", start, end)
	}
	d := gptDisk(t, size, Partition{Index: 1, Start: MiB, Size: 4 * MiB}, Partition{Index: 4, Start: 5 * MiB, Size: end - 5*MiB})
	tab, err := read(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Kind != "gpt" || tab.SectorSize != 512 || len(tab.Partitions) != 2 {
		t.Fatalf("table: %+v", tab)
	}
	p, err := tab.Partition(4)
	if err != nil || p.Start != 5*MiB || p.End() != end || p.Type != LinuxFilesystem {
		t.Errorf("partition 4: %+v %v", p, err)
	}
	if _, err := tab.Partition(2); err == nil || err.Error() != "no partition 2 (it has 1, 4)" {
		t.Errorf("partition 2: %v", err)
	}

	// A damaged primary header: the backup still describes the disk.
	d[512+100] ^= 0xFF // inside the header sector but past 92 bytes: ignored
	d[512+30] ^= 0xFF  // inside the CRC'd header
	tab2, err := read(t, d)
	if err != nil || len(tab2.Partitions) != 2 {
		t.Errorf("with a damaged primary header: %+v %v", tab2, err)
	}
}

func TestExtended(t *testing.T) {
	d := make(disk, 16*MiB)
	entry(d, 0, 0, 0x83, 2048, 2048)         // 1: 1-2 MiB
	entry(d, 0, 1, 0x05, 4096, 12*2048)      // 2: extended, 2-14 MiB
	ext := int64(4096 * 512)                 //
	entry(d, ext, 0, 0x83, 2048, 2048)       // 5: 3-4 MiB
	entry(d, ext, 1, 0x05, 4096, 2048*4)     // next EBR at ext+2 MiB
	entry(d, ext+2*MiB, 0, 0x83, 2048, 2048) // 6: 5-6 MiB
	tab, err := read(t, d)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, p := range tab.Partitions {
		got = append(got, p.Index)
	}
	if len(got) != 4 || got[2] != 5 || got[3] != 6 {
		t.Fatalf("partitions %v", got)
	}
	p, err := tab.Partition(6)
	if err != nil || p.Start != 5*MiB || p.Size != MiB {
		t.Errorf("partition 6: %+v %v", p, err)
	}
	if _, err := tab.Partition(2); err == nil || !strings.Contains(err.Error(), "extended partition") {
		t.Errorf("partition 2 (extended): %v", err)
	}
	if _, err := tab.Partition(3); err == nil || err.Error() != "no partition 3 (it has 1, 5, 6)" {
		t.Errorf("partition 3: %v", err)
	}
}

// gptFix recomputes the primary header's CRCs after a test changed it,
// and wipes the backup so that only the primary counts.
func gptFix(d disk) {
	h := d[512 : 512+512]
	n := binary.LittleEndian.Uint32(h[80:])
	sz := binary.LittleEndian.Uint32(h[84:])
	if arr := uint64(n) * uint64(sz); arr <= 1<<20 && 1024+arr <= uint64(len(d)) {
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(d[1024:1024+arr]))
	}
	binary.LittleEndian.PutUint32(h[16:], 0)
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
	copy(d[len(d)-512:], make([]byte, 512))
}

func gptEntry(d disk, i int, first, last uint64) {
	e := d[1024+128*i:]
	g, _ := parseGUID(LinuxFilesystem)
	copy(e, g[:])
	binary.LittleEndian.PutUint64(e[32:], first)
	binary.LittleEndian.PutUint64(e[40:], last)
}

func TestBadTables(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T) disk
		want string
	}{
		{"empty disk", func(t *testing.T) disk { return make(disk, MiB) }, "no partition table (no MBR signature)"},
		{"tiny disk", func(t *testing.T) disk { return make(disk, 100) }, "smaller than one sector"},
		{"FAT boot sector", func(t *testing.T) disk {
			d := make(disk, MiB)
			d[0], d[1], d[2] = 0xEB, 0x3C, 0x90
			copy(d[446:510], bytes.Repeat([]byte{0x4D}, 64))
			d[510], d[511] = 0x55, 0xAA
			return d
		}, "boot indicator"},
		{"MBR truncated image", func(t *testing.T) disk {
			d := mbrDisk(t, 8*MiB, Partition{Index: 1, Start: MiB, Size: 7 * MiB})
			return d[:4*MiB]
		}, "partition 1 (bytes 1048576-8388608) extends past the end of the disk (4194304 bytes)"},
		{"MBR overlap", func(t *testing.T) disk {
			d := make(disk, 8*MiB)
			entry(d, 0, 0, 0x83, 2048, 4096)
			entry(d, 0, 1, 0x83, 4096, 4096)
			return d
		}, "partitions 1 (bytes 1048576-3145728) and 2 (bytes 2097152-4194304) overlap"},
		{"MBR overlap with extended", func(t *testing.T) disk {
			d := make(disk, 8*MiB)
			entry(d, 0, 0, 0x05, 2048, 8192)
			entry(d, 0, 1, 0x83, 4096, 1024)
			return d
		}, "overlap"},
		{"MBR partition at sector 0", func(t *testing.T) disk {
			d := make(disk, 8*MiB)
			entry(d, 0, 0, 0x83, 0, 100)
			return d
		}, "starts at sector 0"},
		{"two extended", func(t *testing.T) disk {
			d := make(disk, 8*MiB)
			entry(d, 0, 0, 0x05, 2048, 2048)
			entry(d, 0, 1, 0x0F, 4096, 2048)
			return d
		}, "both extended"},
		{"EBR chain loop", func(t *testing.T) disk {
			d := make(disk, 8*MiB)
			entry(d, 0, 0, 0x05, 2048, 8192)
			entry(d, MiB, 0, 0x83, 1, 10)
			entry(d, MiB, 1, 0x05, 0, 10) // links to itself
			return d
		}, "loops back to sector 2048"},
		{"EBR chain long", func(t *testing.T) disk {
			d := make(disk, 8*MiB)
			entry(d, 0, 0, 0x05, 2048, 8192)
			for i := uint32(0); i < 200; i++ {
				entry(d, MiB+int64(i)*2*512, 0, 0x83, 1, 1)
				entry(d, MiB+int64(i)*2*512, 1, 0x05, 2*(i+1), 2)
			}
			return d
		}, "more than 128 logical partitions"},
		{"EBR outside extended", func(t *testing.T) disk {
			d := make(disk, 8*MiB)
			entry(d, 0, 0, 0x05, 2048, 2048)
			entry(d, MiB, 0, 0x83, 1, 10)
			entry(d, MiB, 1, 0x05, 4096, 10)
			return d
		}, "outside the extended partition"},
		{"logical outside extended", func(t *testing.T) disk {
			d := make(disk, 8*MiB)
			entry(d, 0, 0, 0x05, 2048, 2048)
			entry(d, MiB, 0, 0x83, 1, 4096)
			return d
		}, "logical partition 5 (bytes 1049088-3146240) lies outside the extended partition"},
		{"EBR without signature", func(t *testing.T) disk {
			d := make(disk, 8*MiB)
			entry(d, 0, 0, 0x05, 2048, 2048)
			return d
		}, "extended boot record at sector 2048 has no signature"},
		{"logical overlap", func(t *testing.T) disk {
			d := make(disk, 8*MiB)
			entry(d, 0, 0, 0x05, 2048, 8192)
			entry(d, MiB, 0, 0x83, 1, 2048)
			entry(d, MiB, 1, 0x05, 1024, 10)
			entry(d, MiB+512*1024, 0, 0x83, 1, 10)
			return d
		}, "partitions 5 (bytes 1049088-2097664) and 6 (bytes 1573376-1578496) overlap"},
		{"GPT header CRC, no backup", func(t *testing.T) disk {
			d := gptDisk(t, 4*MiB, Partition{Index: 1, Start: MiB, Size: MiB})
			copy(d[len(d)-512:], make([]byte, 512))
			d[512+40]++
			return d
		}, "gpt (protective MBR found): header at sector 1: CRC"},
		{"GPT entry array CRC", func(t *testing.T) disk {
			d := gptDisk(t, 4*MiB, Partition{Index: 1, Start: MiB, Size: MiB})
			copy(d[len(d)-512:], make([]byte, 512))
			d[1024+40]++
			return d
		}, "partition entry array at sector 2: CRC"},
		{"GPT no header", func(t *testing.T) disk {
			d := make(disk, 4*MiB)
			entry(d, 0, 0, 0xEE, 1, 8191)
			return d
		}, "no GPT header at sector 1"},
		{"GPT huge entry array", func(t *testing.T) disk {
			d := gptDisk(t, 4*MiB)
			binary.LittleEndian.PutUint32(d[512+80:], 1<<30)
			gptFix(d)
			return d
		}, "is too large"},
		{"GPT entry array past end", func(t *testing.T) disk {
			d := gptDisk(t, 4*MiB)
			binary.LittleEndian.PutUint64(d[512+72:], 8190)
			gptFix(d)
			return d
		}, "extends past the end of the disk"},
		{"GPT bad entry size", func(t *testing.T) disk {
			d := gptDisk(t, 4*MiB)
			binary.LittleEndian.PutUint32(d[512+84:], 12)
			gptFix(d)
			return d
		}, "bad partition entry size 12"},
		{"GPT usable beyond disk", func(t *testing.T) disk {
			d := gptDisk(t, 4*MiB)
			binary.LittleEndian.PutUint64(d[512+48:], 1<<40)
			gptFix(d)
			return d
		}, "do not fit a disk of 8192 sectors"},
		{"GPT partition outside usable", func(t *testing.T) disk {
			d := gptDisk(t, 4*MiB)
			gptEntry(d, 0, 10, 100)
			gptFix(d)
			return d
		}, "partition 1 (sectors 10-100) lies outside the usable sectors"},
		{"GPT reversed partition", func(t *testing.T) disk {
			d := gptDisk(t, 4*MiB)
			gptEntry(d, 2, 100, 50)
			gptFix(d)
			return d
		}, "partition 3 (sectors 100-50)"},
		{"GPT overlap", func(t *testing.T) disk {
			d := gptDisk(t, 4*MiB)
			gptEntry(d, 0, 2048, 4095)
			gptEntry(d, 1, 4000, 5000)
			gptFix(d)
			return d
		}, "gpt: partitions 1 (bytes 1048576-2097152) and 2 (bytes 2048000-2560512) overlap"},
		{"GPT truncated image", func(t *testing.T) disk {
			d := gptDisk(t, 8*MiB, Partition{Index: 1, Start: MiB, Size: 6 * MiB})
			return d[:2*MiB]
		}, "do not fit a disk of 4096 sectors"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tab, err := read(t, tc.make(t))
			if err == nil {
				t.Fatalf("read succeeded: %+v", tab)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\n  does not contain %q", err, tc.want)
			}
		})
	}
}

func TestNoTable(t *testing.T) {
	for _, d := range []disk{make(disk, MiB), make(disk, 10)} {
		if _, err := read(t, d); !errors.Is(err, ErrNoTable) {
			t.Errorf("%d bytes of zeros: %v, want ErrNoTable", len(d), err)
		}
	}
}

func TestWriteRefuses(t *testing.T) {
	d := make(disk, 8*MiB)
	for _, tc := range []struct {
		gpt   bool
		parts []Partition
		want  string
	}{
		{false, []Partition{{Index: 5, Start: MiB, Size: MiB}}, "out of range"},
		{false, []Partition{{Index: 1, Start: 0, Size: MiB}}, "positive multiples"},
		{false, []Partition{{Index: 1, Start: MiB, Size: 100}}, "positive multiples"},
		{false, []Partition{{Index: 1, Start: MiB, Size: 8 * MiB}}, "past the end"},
		{false, []Partition{{Index: 1, Start: MiB, Size: 2 * MiB}, {Index: 2, Start: 2 * MiB, Size: MiB}}, "overlap"},
		{false, []Partition{{Index: 1, Start: MiB, Size: MiB}, {Index: 1, Start: 4 * MiB, Size: MiB}}, "given twice"},
		{false, []Partition{{Index: 1, Start: MiB, Size: MiB, Type: "0xee"}}, "bad type"},
		{true, []Partition{{Index: 1, Start: 512, Size: MiB}}, "outside the usable"},
		{true, []Partition{{Index: 1, Start: MiB, Size: 7 * MiB}}, "outside the usable"},
		{true, []Partition{{Index: 1, Start: MiB, Size: MiB, Type: "nope"}}, "bad GUID"},
	} {
		var err error
		if tc.gpt {
			err = WriteGPT(d, int64(len(d)), tc.parts)
		} else {
			err = WriteMBR(d, int64(len(d)), tc.parts)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("write %+v: %v, want %q", tc.parts, err, tc.want)
		}
	}
}

func TestGUID(t *testing.T) {
	g, err := parseGUID(LinuxFilesystem)
	if err != nil {
		t.Fatal(err)
	}
	// The on-disk form of the Linux filesystem type, as in the UEFI spec.
	want := []byte{0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4}
	if !bytes.Equal(g[:], want) || guidString(g) != LinuxFilesystem {
		t.Errorf("GUID %x %s", g, guidString(g))
	}
}

// FuzzRead feeds arbitrary disks to Read: it must not panic, and what it
// accepts must lie inside the disk without overlaps. The seeds are 64 KiB,
// so run it with a short -fuzzminimizetime (e.g. 1s).
func FuzzRead(f *testing.F) {
	seed := func(d disk) { f.Add([]byte(d)) }
	small := int64(64 * 1024)
	m := make(disk, small)
	WriteMBR(m, small, []Partition{{Index: 1, Start: 4096, Size: 8192}, {Index: 2, Start: 16384, Size: 4096}})
	seed(m)
	g := make(disk, small)
	WriteGPT(g, small, []Partition{{Index: 1, Start: 34 * 512, Size: 8192}})
	seed(g)
	e := make(disk, small)
	entry(e, 0, 0, 0x05, 8, 64)
	entry(e, 8*512, 0, 0x83, 1, 2)
	entry(e, 8*512, 1, 0x05, 8, 4)
	entry(e, 16*512, 0, 0x83, 1, 2)
	seed(e)
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := Read(disk(data), int64(len(data)))
		if err != nil {
			return
		}
		var plain []Partition
		for _, p := range tab.Partitions {
			if p.Size <= 0 || p.Start < 0 || p.End() > int64(len(data)) {
				t.Fatalf("partition %+v outside a disk of %d bytes", p, len(data))
			}
			if !p.Extended {
				plain = append(plain, p)
			}
			if _, err := tab.Partition(p.Index); err != nil && !p.Extended {
				t.Fatalf("listed partition %d: %v", p.Index, err)
			}
		}
		if err := noOverlap(plain); err != nil {
			t.Fatalf("accepted overlapping partitions: %v", err)
		}
	})
}
