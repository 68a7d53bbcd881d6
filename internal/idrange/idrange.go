package idrange

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// Block is the size and alignment of a picked range: the 65536 ids a
// classic Unix system has, so that a guest's nobody (65534) is mapped.
const Block = 65536

// The window pick chooses from (systemd-nspawn's): above the ids that
// host users and /etc/subuid allocations usually take, below 2^31.
const (
	pickFirst = 0x00080000
	pickEnd   = 0x6fff0000
)

// Range is a run of host ids: Base, Base+1, ..., Base+Size-1.
type Range struct {
	Base uint32 `json:"base"`
	Size uint32 `json:"size"`
}

func (r Range) end() uint64 { return uint64(r.Base) + uint64(r.Size) }

// Overlaps reports whether the two ranges share an id.
func (r Range) Overlaps(o Range) bool {
	return uint64(r.Base) < o.end() && uint64(o.Base) < r.end()
}

func (r Range) String() string {
	return fmt.Sprintf("%d-%d", r.Base, r.end()-1)
}

// Spec is a parsed PRIVATE_USERS: Enabled false for "no"; Pick for
// "pick"; otherwise the explicit Range.
type Spec struct {
	Enabled bool
	Pick    bool
	Range   Range
}

// Parse reads PRIVATE_USERS: "" or "no" (privileged, the default),
// "pick", or "BASE[:SIZE]" with SIZE 65536 when left out. BASE 0 is
// refused: it would map the guest's root to the host's.
func Parse(s string) (Spec, error) {
	switch s {
	case "", "no":
		return Spec{}, nil
	case "pick":
		return Spec{Enabled: true, Pick: true}, nil
	}
	baseText, sizeText, hasSize := strings.Cut(s, ":")
	base, err := strconv.ParseUint(baseText, 10, 32)
	if err != nil {
		return Spec{}, fmt.Errorf("%q is not no, pick, or BASE[:SIZE] (BASE a host uid)", s)
	}
	size := uint64(Block)
	if hasSize {
		if size, err = strconv.ParseUint(sizeText, 10, 32); err != nil || size == 0 {
			return Spec{}, fmt.Errorf("%q: SIZE %q is not a positive number of ids", s, sizeText)
		}
	}
	if base == 0 {
		return Spec{}, fmt.Errorf("%q: BASE 0 would make the guest's root the host's root", s)
	}
	// 2^32-1 is (uid_t)-1, never a valid id.
	if base+size > 1<<32-1 {
		return Spec{}, fmt.Errorf("%q: the range ends past the last host id 4294967294", s)
	}
	return Spec{Enabled: true, Range: Range{Base: uint32(base), Size: uint32(size)}}, nil
}

// ErrTaken is wrapped by errors about a range that overlaps one that is
// already given out.
var ErrTaken = errors.New("id range taken")

// pick returns the first free block, trying candidates in a fixed order
// that starts at one derived from name.
func pick(name string, taken []Range) (Range, error) {
	n := uint32((pickEnd - pickFirst) / Block)
	h := fnv.New32a()
	h.Write([]byte(name))
	first := h.Sum32() % n
	for i := uint32(0); i < n; i++ {
		c := Range{Base: pickFirst + ((first+i)%n)*Block, Size: Block}
		if !overlapsAny(c, taken) {
			return c, nil
		}
	}
	return Range{}, fmt.Errorf("pick: %w: no free block of %d ids left between %d and %d", ErrTaken, Block, pickFirst, pickEnd)
}

func overlapsAny(r Range, taken []Range) bool {
	for _, t := range taken {
		if r.Overlaps(t) {
			return true
		}
	}
	return false
}
