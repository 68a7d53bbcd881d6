package idrange

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/fdlock"
)

// Owner names the subhost a range belongs to: two subhosts of one name
// under different homes (tests, the stage command) are two owners.
type Owner struct {
	Name string `json:"name"`
	Home string `json:"home"`
}

// Registry is the host's list of ranges given to subhosts.
type Registry struct {
	// Dir holds the registry file and its lock: the default state root,
	// /run/subhost (whatever a runner's --state-dir: the ranges are the
	// host's), so that a reboot of the host forgets every range with the
	// subhosts that held them.
	Dir string
	// SubIDFiles are read for the ranges host users own; nil means
	// SubIDFiles (the package variable). Tests point it at scratch files.
	SubIDFiles []string
	// AccountFiles are read for the ids of host users and groups; nil
	// means AccountFiles (the package variable).
	AccountFiles []string
}

type entry struct {
	Owner
	Range
}

func (r Registry) file() string { return filepath.Join(r.Dir, ".idranges") }

// hostIDs are the ids the host's users hold: their subuid/subgid ranges
// and their own uids and gids.
func (r Registry) hostIDs() ([]subIDRange, error) {
	subFiles, accountFiles := r.SubIDFiles, r.AccountFiles
	if subFiles == nil {
		subFiles = SubIDFiles
	}
	if accountFiles == nil {
		accountFiles = AccountFiles
	}
	subs, err := readSubIDs(subFiles)
	if err != nil {
		return nil, err
	}
	accounts, err := readAccounts(accountFiles)
	if err != nil {
		return nil, err
	}
	return append(subs, accounts...), nil
}

// Acquire gives owner the range spec asks for and records it: the range
// it already holds when it holds one that fits spec (a hibernated or
// rebooted subhost keeps its ids), else a picked or the explicit one. An
// explicit range that overlaps another owner's or a subuid/subgid range
// is an error wrapping ErrTaken, and nothing is recorded.
func (r Registry) Acquire(owner Owner, spec Spec) (Range, error) {
	if !spec.Enabled {
		return Range{}, errors.New("acquire: PRIVATE_USERS is no")
	}
	var got Range
	err := r.locked(func(entries []entry) ([]entry, error) {
		var others []entry
		for _, e := range entries {
			if e.Owner == owner {
				if spec.Pick || e.Range == spec.Range {
					got = e.Range
					return nil, nil // unchanged
				}
				continue // the config changed while it was down: re-allocate
			}
			others = append(others, e)
		}
		taken, err := r.taken(others)
		if err != nil {
			return nil, err
		}
		if spec.Pick {
			if got, err = pick(owner.Name, taken); err != nil {
				return nil, err
			}
		} else {
			if err := r.checkFree(spec.Range, others); err != nil {
				return nil, err
			}
			got = spec.Range
		}
		return append(others, entry{owner, got}), nil
	})
	return got, err
}

// Check reports, without changing anything, whether an explicit range is
// free for owner: the read-only check a Validate makes.
func (r Registry) Check(owner Owner, want Range) error {
	entries, err := r.read()
	if err != nil {
		return err
	}
	var others []entry
	for _, e := range entries {
		if e.Owner != owner {
			others = append(others, e)
		}
	}
	return r.checkFree(want, others)
}

func (r Registry) checkFree(want Range, others []entry) error {
	for _, e := range others {
		if want.Overlaps(e.Range) {
			return fmt.Errorf("PRIVATE_USERS=%d:%d: %w: it overlaps %s of subhost %q (home %s)", want.Base, want.Size, ErrTaken, e.Range, e.Name, e.Home)
		}
	}
	subs, err := r.hostIDs()
	if err != nil {
		return err
	}
	for _, s := range subs {
		if want.Overlaps(s.Range) {
			return fmt.Errorf("PRIVATE_USERS=%d:%d: %w: it overlaps %s", want.Base, want.Size, ErrTaken, s.what)
		}
	}
	return nil
}

func (r Registry) taken(others []entry) ([]Range, error) {
	subs, err := r.hostIDs()
	if err != nil {
		return nil, err
	}
	var out []Range
	for _, e := range others {
		out = append(out, e.Range)
	}
	for _, s := range subs {
		out = append(out, s.Range)
	}
	return out, nil
}

// Lookup returns the range owner holds, if any.
func (r Registry) Lookup(owner Owner) (Range, bool, error) {
	entries, err := r.read()
	if err != nil {
		return Range{}, false, err
	}
	for _, e := range entries {
		if e.Owner == owner {
			return e.Range, true, nil
		}
	}
	return Range{}, false, nil
}

// Release forgets owner's range. Holding none is success.
func (r Registry) Release(owner Owner) error {
	return r.locked(func(entries []entry) ([]entry, error) {
		out := entries[:0:0]
		for _, e := range entries {
			if e.Owner != owner {
				out = append(out, e)
			}
		}
		if len(out) == len(entries) {
			return nil, nil
		}
		return out, nil
	})
}

// locked runs fn on the registry's entries under the host-wide lock and
// writes what it returns (nil: no change).
func (r Registry) locked(fn func([]entry) ([]entry, error)) error {
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return fmt.Errorf("id range registry: %w", err)
	}
	lock, err := os.OpenFile(r.file()+".lock", os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("id range registry: %w", err)
	}
	defer lock.Close()
	if err := fdlock.Exclusive(lock); err != nil {
		return fmt.Errorf("id range registry: lock: %w", err)
	}
	entries, err := r.read()
	if err != nil {
		return err
	}
	out, err := fn(entries)
	if err != nil || out == nil {
		return err
	}
	return r.write(out)
}

func (r Registry) read() ([]entry, error) {
	data, err := os.ReadFile(r.file())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("id range registry: %w", err)
	}
	var entries []entry
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("id range registry %s: %w", r.file(), err)
	}
	return entries, nil
}

// write replaces the registry atomically; an empty one is removed, so
// that a host with no unprivileged subhost keeps no file.
func (r Registry) write(entries []entry) error {
	if len(entries) == 0 {
		if err := os.Remove(r.file()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("id range registry: %w", err)
		}
		return nil
	}
	data, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(r.Dir, ".idranges.tmp*")
	if err != nil {
		return fmt.Errorf("id range registry: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("id range registry: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("id range registry: %w", err)
	}
	if err := os.Rename(tmp.Name(), r.file()); err != nil {
		return fmt.Errorf("id range registry: %w", err)
	}
	return nil
}
