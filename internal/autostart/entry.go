package autostart

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/subhost/subhost/internal/atomicfile"
	"github.com/subhost/subhost/sdk"
)

// Entry is one enrolled subhost: what `subhost enable` recorded.
type Entry struct {
	Name     string
	Pipeline string        // "" = the default pipeline
	Home     string        // "" = the pipeline's home followed by Name
	Order    int           // lower starts first, stops last
	Group    string        // "" = no group
	Delay    time.Duration // wait after this subhost before the next order starts
}

// MaxOrder bounds Order (and -MaxOrder below).
const MaxOrder = 1_000_000

// maxFileSize bounds an enrolment file; it holds a handful of short lines.
const maxFileSize = 4096

// isGroupName reports whether s is 1 to 64 letters, digits, '.', '_' or
// '-', the first a letter or digit. (A loop, not a regexp: this package
// is in every subhost command, and compiling `{0,63}` took a fifth of a
// millisecond at each start.)
func isGroupName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// ValidGroup checks a group name.
func ValidGroup(g string) error {
	if !isGroupName(g) {
		return fmt.Errorf("group %q: want letters, digits, '.', '_' or '-' (at most 64, not starting with a punctuation mark)", g)
	}
	return nil
}

// Validate checks every field.
func (e Entry) Validate() error {
	if err := sdk.ValidName(e.Name); err != nil {
		return err
	}
	if e.Home != "" && !filepath.IsAbs(e.Home) {
		return fmt.Errorf("home %q is not an absolute path", e.Home)
	}
	if e.Home != "" && strings.ContainsAny(e.Home, "\n\x00") {
		return fmt.Errorf("home %q holds a newline or NUL", e.Home)
	}
	if e.Pipeline != "" && !isGroupName(e.Pipeline) {
		return fmt.Errorf("pipeline %q is not a pipeline name", e.Pipeline)
	}
	if e.Order < -MaxOrder || e.Order > MaxOrder {
		return fmt.Errorf("order %d is out of range (-%d..%d)", e.Order, MaxOrder, MaxOrder)
	}
	if e.Group != "" {
		if err := ValidGroup(e.Group); err != nil {
			return err
		}
	}
	if e.Delay < 0 || e.Delay > time.Hour {
		return fmt.Errorf("delay %s is out of range (0..1h)", e.Delay)
	}
	return nil
}

// The file format: `key=value` lines (no quoting: a value runs to the end
// of its line), '#' comments, blank lines; the file's name is the
// subhost's. Keys: pipeline, home, order, group, delay.
func (e Entry) marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# subhost %s, enrolled with `subhost enable`; `subhost disable %s` removes it.\n", e.Name, e.Name)
	if e.Pipeline != "" {
		fmt.Fprintf(&b, "pipeline=%s\n", e.Pipeline)
	}
	if e.Home != "" {
		fmt.Fprintf(&b, "home=%s\n", e.Home)
	}
	fmt.Fprintf(&b, "order=%d\n", e.Order)
	if e.Group != "" {
		fmt.Fprintf(&b, "group=%s\n", e.Group)
	}
	if e.Delay != 0 {
		fmt.Fprintf(&b, "delay=%s\n", e.Delay)
	}
	return b.Bytes()
}

// parse reads an enrolment file's content; path names it in errors.
func parse(path, name string, data []byte) (Entry, error) {
	e := Entry{Name: name}
	bad := func(line int, format string, args ...any) error {
		return sdk.Invalidf("%s:%d: %s", path, line, fmt.Sprintf(format, args...))
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return e, bad(n, "want key=value, got %q", line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if seen[key] {
			return e, bad(n, "%s is set twice", key)
		}
		seen[key] = true
		var err error
		switch key {
		case "pipeline":
			e.Pipeline = value
		case "home":
			e.Home = value
		case "order":
			e.Order, err = strconv.Atoi(value)
		case "group":
			e.Group = value
		case "delay":
			e.Delay, err = time.ParseDuration(value)
		default:
			return e, bad(n, "unknown key %q (want pipeline, home, order, group or delay)", key)
		}
		if err != nil {
			return e, bad(n, "%s: %q is not a valid value", key, value)
		}
	}
	if err := e.Validate(); err != nil {
		return e, sdk.Invalidf("%s: %w", path, err)
	}
	return e, nil
}

// Dir is ETC/autostart.
type Dir string

func (d Dir) path(name string) string { return filepath.Join(string(d), name) }

// Enable writes (or replaces) the subhost's enrolment, atomically.
func (d Dir) Enable(e Entry) error {
	if err := e.Validate(); err != nil {
		return sdk.Invalidf("%w", err)
	}
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(d.path(e.Name), e.marshal(), 0o644)
}

// ErrNotEnrolled is returned by Disable and Get for a subhost without an
// enrolment file.
var ErrNotEnrolled = errors.New("not enrolled")

// Disable removes the subhost's enrolment.
func (d Dir) Disable(name string) error {
	if err := sdk.ValidName(name); err != nil {
		return err
	}
	err := os.Remove(d.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotEnrolled
	}
	return err
}

// Get reads one subhost's enrolment.
func (d Dir) Get(name string) (Entry, error) {
	if err := sdk.ValidName(name); err != nil {
		return Entry{}, err
	}
	e, err := d.read(name)
	if errors.Is(err, fs.ErrNotExist) {
		// A name there that leads nowhere (a dangling symlink) is an
		// enrolment gone wrong, as List says, not none.
		if _, lerr := os.Lstat(d.path(name)); lerr == nil {
			return e, sdk.Invalidf("%s: %v", d.path(name), err)
		}
		return e, ErrNotEnrolled
	}
	return e, err
}

func (d Dir) read(name string) (Entry, error) {
	path := d.path(name)
	f, err := os.Open(path)
	if err != nil {
		return Entry{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Entry{}, err
	}
	if !fi.Mode().IsRegular() {
		return Entry{}, sdk.Invalidf("%s is not a regular file", path)
	}
	if fi.Size() > maxFileSize {
		return Entry{}, sdk.Invalidf("%s is larger than %d bytes", path, maxFileSize)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil && fi.Size() > 0 {
		return Entry{}, err
	}
	return parse(path, name, data)
}

// gone reports whether the enrolment file name no longer exists at all
// (a dangling symlink does, and is an error to report).
func (d Dir) gone(name string) bool {
	_, err := os.Lstat(d.path(name))
	return errors.Is(err, fs.ErrNotExist)
}

// List reads every enrolment, sorted by order then name. Files that are
// not valid are returned as errors, one per file, and left out: one typo
// must not keep every other subhost down at boot. Hidden files and
// package managers' leftovers (name~, name.dpkg-old...) are skipped.
func (d Dir) List() ([]Entry, []error) {
	des, err := os.ReadDir(string(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{err}
	}
	var entries []Entry
	var errs []error
	for _, de := range des {
		n := de.Name()
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") || strings.Contains(n, ".dpkg-") {
			continue
		}
		if sdk.ValidName(n) != nil {
			errs = append(errs, sdk.Invalidf("%s: %q is not a subhost name", string(d), n))
			continue
		}
		e, err := d.read(n)
		if errors.Is(err, fs.ErrNotExist) && d.gone(n) {
			continue // disabled since the directory was read
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), strings.Compare(a.Name, b.Name))
	})
	return entries, errs
}
