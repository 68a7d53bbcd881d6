// Package parttable reads and writes MBR and GPT partition tables in disk
// image files.
//
// subhost reads tables itself rather than relying on the kernel's
// partition parsers (absent on some kernels; see DESIGN.md), and attaches
// each partition it needs as its own loop device by offset and size.
//
// The table is untrusted: a disk image's content is controlled by the
// tenant. Read checks every partition against the image size, refuses
// overlapping partitions (a guest writing to one partition node must not
// write into another, such as the host-mounted root), bounds the GPT entry
// array and checks both CRCs, falls back to the backup GPT header when the
// primary is damaged, and follows an MBR's extended partition chain for
// logical partitions 5 and up with a cap on its length and a check for
// loops. A protective MBR (type 0xEE) means the disk is GPT.
//
// Partitions are numbered as Linux numbers them: MBR primaries 1-4,
// logical partitions from 5 in chain order; GPT partition N is entry N-1
// of the array (empty entries leave gaps).
//
// WriteMBR and WriteGPT write the tables that `subhost image build` makes.
package parttable
