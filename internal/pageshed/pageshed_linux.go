// Package pageshed lets a long-lived process give back the pages of its
// own executable that start-up touched and its waiting will not need.
package pageshed

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Advice is what to do with the pages.
type Advice int

const (
	// Unmap drops them from this process only (MADV_DONTNEED): they stay
	// in the page cache for the next process that runs the binary.
	Unmap Advice = unix.MADV_DONTNEED
	// Reclaim also lets the kernel evict those only this process maps
	// (MADV_PAGEOUT).
	Reclaim Advice = unix.MADV_PAGEOUT
)

// Shed applies advice to the read-only mappings of this process's
// executable, after returning free heap to the kernel: clean file pages
// that start-up touched (package initialisation), faulted back from the
// page cache if they are ever needed again. With one long-lived process
// per running subhost, they are most of what each costs.
//
// It does nothing in a position-independent executable (go build
// -buildmode=pie, as some distributions build): there the dynamic loader
// writes relocated pointers into read-only data (RELRO: .data.rel.ro,
// where Go keeps its type descriptors) and then makes it read-only, so
// those pages are private copies that differ from the file, behind
// mappings that look read-only like the rest. MADV_DONTNEED drops the
// copies and the next touch faults the file's unrelocated bytes back in:
// the process dies at its next use of a type. Only a fixed-address
// executable (ET_EXEC, what the Makefile builds) maps its read-only
// segments exactly as they are in the file.
func Shed(advice Advice) {
	debug.FreeOSMemory()
	if t, err := exeType("/proc/self/exe"); err != nil || t != etExec {
		return
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		start, end, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		lo, err1 := strconv.ParseUint(start, 16, 64)
		hi, err2 := strconv.ParseUint(end, 16, 64)
		if err1 != nil || err2 != nil || hi <= lo {
			continue
		}
		// A plain madvise on a read-only file mapping: nothing of the
		// program's state is lost, whatever the kernel decides.
		unix.Syscall(unix.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), uintptr(advice))
	}
}

// ELF object file types (e_type) that exeType tells apart.
const (
	etExec = 2 // ET_EXEC: linked to run at fixed addresses
	etDyn  = 3 // ET_DYN: position-independent (PIE, shared object)
)

// exeType reads the ELF file type (e_type) of the file at path. It reads
// the 18 bytes it needs itself: debug/elf would add some 300
// kilobytes to the supervisor's monitor, which calls Shed to be small.
func exeType(path string) (uint16, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var h [18]byte // e_ident[16], e_type
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return 0, fmt.Errorf("%s: ELF header: %w", path, err)
	}
	return elfType(h[:])
}

// elfType decodes e_type from the start of an ELF header, in the byte
// order its e_ident says.
func elfType(h []byte) (uint16, error) {
	if len(h) < 18 || string(h[:4]) != "\x7fELF" {
		return 0, errors.New("not an ELF file")
	}
	switch h[5] { // EI_DATA
	case 1: // ELFDATA2LSB
		return binary.LittleEndian.Uint16(h[16:]), nil
	case 2: // ELFDATA2MSB
		return binary.BigEndian.Uint16(h[16:]), nil
	}
	return 0, fmt.Errorf("ELF header: unknown byte order %d", h[5])
}
