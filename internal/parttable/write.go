package parttable

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
)

// LinuxFilesystem is the GPT type GUID of a Linux filesystem partition.
const LinuxFilesystem = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

const (
	sector         = 512
	gptEntries     = 128
	gptEntrySize   = 128
	gptArraySector = (gptEntries * gptEntrySize) / sector // 32
)

// GPTUsable returns the byte range [start, end) that partitions may use on
// a disk of size bytes with the GPT WriteGPT writes.
func GPTUsable(size int64) (start, end int64) {
	last := size/sector - 1
	return (2 + gptArraySector) * sector, (last - gptArraySector) * sector
}

// WriteMBR writes an MBR holding up to four primary partitions (Index 1-4,
// Start and Size multiples of 512, Type an MBR type byte like "0x83", ""
// for 0x83) to a disk of size bytes.
func WriteMBR(w io.WriterAt, size int64, parts []Partition) error {
	mbr := make([]byte, sector)
	if _, err := io.ReadFull(rand.Reader, mbr[440:444]); err != nil { // disk signature
		return err
	}
	if err := checkLayout(parts, sector, size, 4); err != nil {
		return fmt.Errorf("mbr: %w", err)
	}
	for _, p := range parts {
		typ := byte(0x83)
		if p.Type != "" {
			v, err := strconv.ParseUint(strings.TrimPrefix(p.Type, "0x"), 16, 8)
			if err != nil || v == 0 || v == 0xEE {
				return fmt.Errorf("mbr: partition %d: bad type %q", p.Index, p.Type)
			}
			typ = byte(v)
		}
		if p.End()/sector > 1<<32-1 {
			return fmt.Errorf("mbr: partition %d ends past 2 TiB, beyond what an MBR can address (use gpt)", p.Index)
		}
		putMBREntry(mbr[446+16*(p.Index-1):], typ, uint32(p.Start/sector), uint32(p.Size/sector))
	}
	mbr[510], mbr[511] = 0x55, 0xAA
	_, err := w.WriteAt(mbr, 0)
	return err
}

// putMBREntry fills one 16-byte entry; CHS fields hold the conventional
// "use LBA" values.
func putMBREntry(b []byte, typ byte, lba, nsects uint32) {
	b[0] = 0
	copy(b[1:4], []byte{0xFE, 0xFF, 0xFF})
	b[4] = typ
	copy(b[5:8], []byte{0xFE, 0xFF, 0xFF})
	binary.LittleEndian.PutUint32(b[8:], lba)
	binary.LittleEndian.PutUint32(b[12:], nsects)
}

// WriteGPT writes a protective MBR, the primary and backup GPT headers and
// partition entry arrays (128 entries, 512-byte sectors) for partitions
// inside GPTUsable(size). Type is a type GUID, "" for LinuxFilesystem.
func WriteGPT(w io.WriterAt, size int64, parts []Partition) error {
	if size%sector != 0 {
		return fmt.Errorf("gpt: disk size %d is not a multiple of %d", size, sector)
	}
	if size < (2*(1+gptArraySector)+2)*sector {
		return fmt.Errorf("gpt: disk of %d bytes is too small", size)
	}
	if err := checkLayout(parts, sector, size, gptEntries); err != nil {
		return fmt.Errorf("gpt: %w", err)
	}
	start, end := GPTUsable(size)
	array := make([]byte, gptEntries*gptEntrySize)
	for _, p := range parts {
		if p.Start < start || p.End() > end {
			return fmt.Errorf("gpt: partition %d (bytes %d-%d) is outside the usable bytes %d-%d", p.Index, p.Start, p.End(), start, end)
		}
		typ := p.Type
		if typ == "" {
			typ = LinuxFilesystem
		}
		g, err := parseGUID(typ)
		if err != nil {
			return fmt.Errorf("gpt: partition %d: %w", p.Index, err)
		}
		e := array[(p.Index-1)*gptEntrySize:]
		copy(e[0:16], g[:])
		if _, err := io.ReadFull(rand.Reader, e[16:32]); err != nil {
			return err
		}
		randomGUID(e[16:32])
		binary.LittleEndian.PutUint64(e[32:], uint64(p.Start/sector))
		binary.LittleEndian.PutUint64(e[40:], uint64(p.End()/sector-1))
		copy(e[56:128], utf16Name("subhost"))
	}
	var disk [16]byte
	if _, err := io.ReadFull(rand.Reader, disk[:]); err != nil {
		return err
	}
	randomGUID(disk[:])

	last := uint64(size/sector - 1)
	arrayCRC := crc32.ChecksumIEEE(array)
	header := func(my, alt, entries uint64) []byte {
		h := make([]byte, sector)
		copy(h, gptSignature)
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], my)
		binary.LittleEndian.PutUint64(h[32:], alt)
		binary.LittleEndian.PutUint64(h[40:], uint64(start/sector))
		binary.LittleEndian.PutUint64(h[48:], uint64(end/sector-1))
		copy(h[56:72], disk[:])
		binary.LittleEndian.PutUint64(h[72:], entries)
		binary.LittleEndian.PutUint32(h[80:], gptEntries)
		binary.LittleEndian.PutUint32(h[84:], gptEntrySize)
		binary.LittleEndian.PutUint32(h[88:], arrayCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}

	pmbr := make([]byte, sector)
	nsects := last
	if nsects > 1<<32-1 {
		nsects = 1<<32 - 1
	}
	putMBREntry(pmbr[446:], 0xEE, 1, uint32(nsects))
	copy(pmbr[447:450], []byte{0x00, 0x02, 0x00}) // CHS of sector 1
	pmbr[510], pmbr[511] = 0x55, 0xAA

	writes := []struct {
		b   []byte
		lba uint64
	}{
		{pmbr, 0},
		{header(1, last, 2), 1},
		{array, 2},
		{array, last - gptArraySector},
		{header(last, 1, last-gptArraySector), last},
	}
	for _, wr := range writes {
		if _, err := w.WriteAt(wr.b, int64(wr.lba)*sector); err != nil {
			return fmt.Errorf("gpt: %w", err)
		}
	}
	return nil
}

// randomGUID makes 16 random bytes a version 4 GUID in on-disk order.
func randomGUID(b []byte) {
	b[7] = b[7]&0x0F | 0x40 // version, in the little-endian third field
	b[8] = b[8]&0x3F | 0x80 // variant
}

// checkLayout validates partitions to be written.
func checkLayout(parts []Partition, ss, size int64, maxIndex int) error {
	seen := map[int]bool{}
	for _, p := range parts {
		if p.Index < 1 || p.Index > maxIndex {
			return fmt.Errorf("partition index %d out of range 1-%d", p.Index, maxIndex)
		}
		if seen[p.Index] {
			return fmt.Errorf("partition %d given twice", p.Index)
		}
		seen[p.Index] = true
		if p.Extended {
			return fmt.Errorf("partition %d: cannot write extended partitions", p.Index)
		}
		if p.Start%ss != 0 || p.Size%ss != 0 || p.Start < ss {
			return fmt.Errorf("partition %d: start %d and size %d must be positive multiples of %d", p.Index, p.Start, p.Size, ss)
		}
		if err := inDisk(p, size); err != nil {
			return err
		}
	}
	return noOverlap(parts)
}
