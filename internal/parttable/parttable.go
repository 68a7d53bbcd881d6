package parttable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
)

// Table is a disk's partition table.
type Table struct {
	// Kind is "mbr" or "gpt".
	Kind string
	// SectorSize is the logical sector size the table was found with.
	SectorSize int64
	// Partitions in index order. An MBR extended partition (the container
	// of logical partitions) is listed with Extended set.
	Partitions []Partition
}

// Partition is one partition, in bytes from the start of the disk.
type Partition struct {
	Index int
	Start int64
	Size  int64
	// Type is the MBR type byte ("0x83") or the GPT type GUID.
	Type string
	// Extended marks an MBR extended partition: a container, not a
	// filesystem.
	Extended bool
}

// End is the byte just past the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

// ErrNoTable is wrapped by Read when the disk has no partition table.
var ErrNoTable = errors.New("no partition table")

// NoPartitionError is Partition's error for an index the table lacks.
type NoPartitionError struct {
	Index int
	Have  []int
}

func (e *NoPartitionError) Error() string {
	if len(e.Have) == 0 {
		return fmt.Sprintf("no partition %d (it has none)", e.Index)
	}
	have := make([]string, len(e.Have))
	for i, n := range e.Have {
		have[i] = strconv.Itoa(n)
	}
	return fmt.Sprintf("no partition %d (it has %s)", e.Index, strings.Join(have, ", "))
}

// Partition returns partition i (1-based, as Linux numbers them).
func (t *Table) Partition(i int) (Partition, error) {
	var have []int
	for _, p := range t.Partitions {
		if p.Index == i {
			if p.Extended {
				return Partition{}, fmt.Errorf("partition %d is an extended partition (a container for logical partitions 5 and up), not a filesystem", i)
			}
			return p, nil
		}
		if !p.Extended {
			have = append(have, p.Index)
		}
	}
	return Partition{}, &NoPartitionError{Index: i, Have: have}
}

// Limits on untrusted input.
const (
	maxLogical      = 128      // logical partitions in an MBR extended chain
	maxEntryArray   = 16 << 20 // bytes of GPT partition entries
	minEntrySize    = 128
	maxEntrySize    = 4096
	mbrSignatureOff = 510
)

// Read reads the partition table of a disk of size bytes.
func Read(r io.ReaderAt, size int64) (*Table, error) {
	if size < 512 {
		return nil, fmt.Errorf("%w: the disk is %d bytes, smaller than one sector", ErrNoTable, size)
	}
	sector0 := make([]byte, 512)
	if err := readFull(r, sector0, 0); err != nil {
		return nil, fmt.Errorf("read sector 0: %w", err)
	}
	if sector0[510] != 0x55 || sector0[511] != 0xAA {
		return nil, fmt.Errorf("%w (no MBR signature)", ErrNoTable)
	}
	entries := mbrEntries(sector0)
	for i, e := range entries {
		// What Linux checks too: a FAT boot sector also ends in 55 AA
		// but has no valid boot indicators here.
		if e.status != 0 && e.status != 0x80 {
			return nil, fmt.Errorf("%w (MBR entry %d has boot indicator %#x: not a partition table)", ErrNoTable, i+1, e.status)
		}
	}
	for _, e := range entries {
		if e.typ == 0xEE {
			return readGPT(r, size)
		}
	}
	return readMBR(r, size, entries)
}

func readFull(r io.ReaderAt, buf []byte, off int64) error {
	n, err := r.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

type mbrEntry struct {
	status      byte
	typ         byte
	lba, nsects uint32
}

func mbrEntries(sector []byte) [4]mbrEntry {
	var out [4]mbrEntry
	for i := range out {
		b := sector[446+16*i:]
		out[i] = mbrEntry{
			status: b[0],
			typ:    b[4],
			lba:    binary.LittleEndian.Uint32(b[8:]),
			nsects: binary.LittleEndian.Uint32(b[12:]),
		}
	}
	return out
}

func isExtended(typ byte) bool { return typ == 0x05 || typ == 0x0F || typ == 0x85 }

func (e mbrEntry) empty() bool { return e.typ == 0 || e.nsects == 0 }

func readMBR(r io.ReaderAt, size int64, entries [4]mbrEntry) (*Table, error) {
	const ss = 512
	t := &Table{Kind: "mbr", SectorSize: ss}
	var ext *Partition
	for i, e := range entries {
		if e.empty() {
			continue
		}
		p := Partition{Index: i + 1, Start: int64(e.lba) * ss, Size: int64(e.nsects) * ss, Type: fmt.Sprintf("%#02x", e.typ), Extended: isExtended(e.typ)}
		if e.lba == 0 {
			return nil, fmt.Errorf("mbr: partition %d starts at sector 0, on the partition table itself", p.Index)
		}
		if err := inDisk(p, size); err != nil {
			return nil, fmt.Errorf("mbr: %w", err)
		}
		if p.Extended {
			if ext != nil {
				return nil, fmt.Errorf("mbr: partitions %d and %d are both extended partitions; only one is allowed", ext.Index, p.Index)
			}
			pp := p
			ext = &pp
		}
		t.Partitions = append(t.Partitions, p)
	}
	if err := noOverlap(t.Partitions); err != nil {
		return nil, fmt.Errorf("mbr: %w", err)
	}
	if ext == nil {
		return t, nil
	}
	logical, err := readEBRChain(r, size, *ext)
	if err != nil {
		return nil, fmt.Errorf("mbr: extended partition %d: %w", ext.Index, err)
	}
	if err := noOverlap(logical); err != nil {
		return nil, fmt.Errorf("mbr: %w", err)
	}
	t.Partitions = append(t.Partitions, logical...)
	return t, nil
}

// readEBRChain follows the linked list of extended boot records inside
// ext: each holds one logical partition (relative to itself) and a link to
// the next record (relative to the start of ext).
func readEBRChain(r io.ReaderAt, size int64, ext Partition) ([]Partition, error) {
	const ss = 512
	var out []Partition
	seen := map[int64]bool{}
	sector := make([]byte, ss)
	for cur := ext.Start; ; {
		if len(seen) >= maxLogical {
			return nil, fmt.Errorf("more than %d logical partitions", maxLogical)
		}
		if seen[cur] {
			return nil, fmt.Errorf("the chain of logical partitions loops back to sector %d", cur/ss)
		}
		seen[cur] = true
		if cur < ext.Start || cur+ss > ext.End() || cur+ss > size {
			return nil, fmt.Errorf("extended boot record at sector %d lies outside the extended partition", cur/ss)
		}
		if err := readFull(r, sector, cur); err != nil {
			return nil, fmt.Errorf("read extended boot record at sector %d: %w", cur/ss, err)
		}
		if sector[510] != 0x55 || sector[511] != 0xAA {
			return nil, fmt.Errorf("extended boot record at sector %d has no signature", cur/ss)
		}
		e := mbrEntries(sector)
		if !e[0].empty() {
			idx := 5 + len(out)
			p := Partition{Index: idx, Start: cur + int64(e[0].lba)*ss, Size: int64(e[0].nsects) * ss, Type: fmt.Sprintf("%#02x", e[0].typ)}
			if isExtended(e[0].typ) {
				return nil, fmt.Errorf("logical partition %d is itself an extended partition", idx)
			}
			if e[0].lba == 0 {
				return nil, fmt.Errorf("logical partition %d starts on its own extended boot record", idx)
			}
			if p.Start < ext.Start || p.End() > ext.End() {
				return nil, fmt.Errorf("logical partition %d (bytes %d-%d) lies outside the extended partition (bytes %d-%d)", idx, p.Start, p.End(), ext.Start, ext.End())
			}
			if err := inDisk(p, size); err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		if e[1].empty() || !isExtended(e[1].typ) {
			return out, nil
		}
		cur = ext.Start + int64(e[1].lba)*ss
	}
}

// inDisk checks that p lies within a disk of size bytes.
func inDisk(p Partition, size int64) error {
	if p.Size <= 0 {
		return fmt.Errorf("partition %d is empty", p.Index)
	}
	if p.Start < 0 || p.Start >= size || p.Size > size-p.Start {
		return fmt.Errorf("partition %d (bytes %d-%d) extends past the end of the disk (%d bytes): truncated image or corrupt table", p.Index, p.Start, p.Start+p.Size, size)
	}
	return nil
}

// noOverlap refuses partitions that share a byte; an extended container
// and its logical partitions are checked separately by the callers.
func noOverlap(parts []Partition) error {
	sorted := slices.Clone(parts)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Start < sorted[j].Start })
	for i := 1; i < len(sorted); i++ {
		a, b := sorted[i-1], sorted[i]
		if b.Start < a.End() {
			lo, hi := a, b
			if lo.Index > hi.Index {
				lo, hi = hi, lo
			}
			return fmt.Errorf("partitions %d (bytes %d-%d) and %d (bytes %d-%d) overlap", lo.Index, lo.Start, lo.End(), hi.Index, hi.Start, hi.End())
		}
	}
	return nil
}

// GPT

const gptSignature = "EFI PART"

type gptHeader struct {
	headerSize                      uint32
	myLBA, altLBA                   uint64
	firstUsable, lastUsable         uint64
	entryLBA                        uint64
	numEntries, entrySize, entryCRC uint32
}

func readGPT(r io.ReaderAt, size int64) (*Table, error) {
	var firstErr error
	for _, ss := range []int64{512, 4096} {
		if size < 2*ss {
			break
		}
		t, err := readGPTAt(r, size, ss, 1)
		if err == nil {
			return t, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		// A damaged primary header: use the backup in the last sector,
		// as the kernel and gdisk do.
		if t, err := readGPTAt(r, size, ss, uint64(size/ss-1)); err == nil {
			return t, nil
		}
	}
	if firstErr == nil {
		firstErr = errors.New("the disk is too small to hold one")
	}
	return nil, fmt.Errorf("gpt (protective MBR found): %w", firstErr)
}

func readGPTAt(r io.ReaderAt, size, ss int64, lba uint64) (*Table, error) {
	buf := make([]byte, ss)
	if err := readFull(r, buf, int64(lba)*ss); err != nil {
		return nil, fmt.Errorf("read header at sector %d: %w", lba, err)
	}
	if string(buf[:8]) != gptSignature {
		return nil, fmt.Errorf("no GPT header at sector %d", lba)
	}
	h := gptHeader{
		headerSize:  binary.LittleEndian.Uint32(buf[12:]),
		myLBA:       binary.LittleEndian.Uint64(buf[24:]),
		altLBA:      binary.LittleEndian.Uint64(buf[32:]),
		firstUsable: binary.LittleEndian.Uint64(buf[40:]),
		lastUsable:  binary.LittleEndian.Uint64(buf[48:]),
		entryLBA:    binary.LittleEndian.Uint64(buf[72:]),
		numEntries:  binary.LittleEndian.Uint32(buf[80:]),
		entrySize:   binary.LittleEndian.Uint32(buf[84:]),
		entryCRC:    binary.LittleEndian.Uint32(buf[88:]),
	}
	if h.headerSize < 92 || int64(h.headerSize) > ss {
		return nil, fmt.Errorf("header at sector %d: bad header size %d", lba, h.headerSize)
	}
	want := binary.LittleEndian.Uint32(buf[16:])
	hdr := slices.Clone(buf[:h.headerSize])
	binary.LittleEndian.PutUint32(hdr[16:], 0)
	if got := crc32.ChecksumIEEE(hdr); got != want {
		return nil, fmt.Errorf("header at sector %d: CRC %#08x, header says %#08x", lba, got, want)
	}
	if h.myLBA != lba {
		return nil, fmt.Errorf("header at sector %d says it is at sector %d", lba, h.myLBA)
	}
	sectors := uint64(size / ss)
	if h.firstUsable > h.lastUsable || h.lastUsable >= sectors {
		return nil, fmt.Errorf("header at sector %d: usable sectors %d-%d do not fit a disk of %d sectors", lba, h.firstUsable, h.lastUsable, sectors)
	}
	if h.entrySize < minEntrySize || h.entrySize > maxEntrySize || h.entrySize%8 != 0 {
		return nil, fmt.Errorf("header at sector %d: bad partition entry size %d", lba, h.entrySize)
	}
	arrayLen := uint64(h.numEntries) * uint64(h.entrySize)
	if arrayLen > maxEntryArray {
		return nil, fmt.Errorf("header at sector %d: partition entry array of %d bytes is too large", lba, arrayLen)
	}
	if h.entryLBA == 0 || h.entryLBA >= sectors || arrayLen > uint64(size)-h.entryLBA*uint64(ss) {
		return nil, fmt.Errorf("header at sector %d: partition entry array (sector %d, %d bytes) extends past the end of the disk", lba, h.entryLBA, arrayLen)
	}
	array := make([]byte, arrayLen)
	if err := readFull(r, array, int64(h.entryLBA)*ss); err != nil {
		return nil, fmt.Errorf("read partition entries at sector %d: %w", h.entryLBA, err)
	}
	if got := crc32.ChecksumIEEE(array); got != h.entryCRC {
		return nil, fmt.Errorf("partition entry array at sector %d: CRC %#08x, header says %#08x", h.entryLBA, got, h.entryCRC)
	}
	t := &Table{Kind: "gpt", SectorSize: ss}
	for i := uint32(0); i < h.numEntries; i++ {
		e := array[uint64(i)*uint64(h.entrySize):]
		var typ [16]byte
		copy(typ[:], e[:16])
		if typ == ([16]byte{}) {
			continue
		}
		first := binary.LittleEndian.Uint64(e[32:])
		last := binary.LittleEndian.Uint64(e[40:])
		idx := int(i) + 1
		if first > last || first < h.firstUsable || last > h.lastUsable {
			return nil, fmt.Errorf("gpt: partition %d (sectors %d-%d) lies outside the usable sectors %d-%d", idx, first, last, h.firstUsable, h.lastUsable)
		}
		p := Partition{Index: idx, Start: int64(first) * ss, Size: int64(last-first+1) * ss, Type: guidString(typ)}
		if err := inDisk(p, size); err != nil {
			return nil, fmt.Errorf("gpt: %w", err)
		}
		t.Partitions = append(t.Partitions, p)
	}
	if err := noOverlap(t.Partitions); err != nil {
		return nil, fmt.Errorf("gpt: %w", err)
	}
	return t, nil
}

// guidString formats a GUID stored in the mixed-endian on-disk form.
func guidString(b [16]byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint16(b[4:]), binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

// parseGUID is guidString's inverse.
func parseGUID(s string) ([16]byte, error) {
	var out [16]byte
	hex := strings.ReplaceAll(s, "-", "")
	if len(hex) != 32 || strings.Count(s, "-") != 4 {
		return out, fmt.Errorf("bad GUID %q", s)
	}
	var raw [16]byte
	for i := range raw {
		v, err := strconv.ParseUint(hex[2*i:2*i+2], 16, 8)
		if err != nil {
			return out, fmt.Errorf("bad GUID %q", s)
		}
		raw[i] = byte(v)
	}
	// The first three fields are stored little-endian.
	out = raw
	slices.Reverse(out[0:4])
	slices.Reverse(out[4:6])
	slices.Reverse(out[6:8])
	return out, nil
}

// utf16Name encodes a GPT partition name (36 UTF-16 code units).
func utf16Name(name string) []byte {
	out := make([]byte, 72)
	for i, u := range utf16.Encode([]rune(name)) {
		if i >= 36 {
			break
		}
		binary.LittleEndian.PutUint16(out[2*i:], u)
	}
	return bytes.Clone(out)
}
