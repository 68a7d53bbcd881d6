package trust

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/subhost/subhost/internal/trust/rule"
	"github.com/subhost/subhost/sdk"
)

// File checks an open file (with fstat, so what is checked is what was
// opened). what names it for the operator: "config", "pipeline file",
// "plugin".
func File(f *os.File, what string) error {
	fi, err := f.Stat()
	if err != nil {
		return sdk.Internalf("%s %s: %w", what, f.Name(), err)
	}
	return check(f.Name(), what, fi)
}

// Path checks a file or directory by path, following symlinks: what is
// checked is what a later open of the path reaches. A missing path returns
// an error for which errors.Is(err, fs.ErrNotExist) holds.
func Path(path, what string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if os.IsNotExist(err) {
			return sdk.NotFoundf("%s %s does not exist: %w", what, path, fs.ErrNotExist)
		}
		return sdk.Invalidf("%s %s: %w", what, path, err)
	}
	return check(path, what, fi)
}

// Open opens a file that root will execute after checking that its
// directory ("WHAT directory"), the directory a symlink leads to, and the
// file itself pass the rule: whoever can write a directory can swap the
// file. It is the rule for plugins, which run from the very descriptor
// checked.
func Open(path, what string) (*os.File, error) {
	if err := Path(filepath.Dir(path), what+" directory"); err != nil {
		return nil, err
	}
	// A symlink leads to a file whose own directory counts too.
	if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(real) != filepath.Dir(filepath.Clean(path)) {
		if err := Path(filepath.Dir(real), what+" directory"); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, sdk.Invalidf("%s %s: %w", what, path, err)
	}
	if err := File(f, what); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// OpenByPath is Open for a file that root will execute by its path, later
// (the exec stage's scripts, so that their $0 is what the operator
// wrote): it also checks that no one but root can change any directory
// on the way to it (walk), or someone could swap the directories between
// the check and the exec. path must be absolute.
func OpenByPath(path, what string) (*os.File, error) {
	if !filepath.IsAbs(path) {
		return nil, sdk.Invalidf("%s %q is not an absolute path", what, path)
	}
	f, err := Open(path, what)
	if err != nil {
		return nil, err
	}
	if err := walk(path, what); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func check(name, what string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return sdk.Internalf("%s %s: no owner information", what, name)
	}
	if p := rule.Problem(st); p != "" {
		return sdk.Invalidf("%s %s %s", what, name, p)
	}
	return nil
}

// maxLinks bounds the symlinks walk follows, as the kernel's 40.
const maxLinks = 40

// walk looks path (absolute) up one name at a time from /, as the kernel will when
// root executes it, and checks every directory a name is looked up in:
// each must pass the rule, or be root's and sticky with the name in it
// root's (there only an entry's owner may rename or remove it: /tmp).
// Anyone else who could change one of them (the operator's deploy user
// owning /srv/site above a root-owned hooks directory, say) could swap
// what the path reaches between the check and the exec. Symlinks are
// followed the same way, their own names checked where they are found.
func walk(path, what string) error {
	var rootSt syscall.Stat_t
	if err := syscall.Stat("/", &rootSt); err != nil {
		return sdk.Internalf("%s %s: /: %w", what, path, err)
	}
	dir, dirSt := "/", rootSt
	names := strings.Split(path, "/")
	for links := 0; len(names) > 0; {
		name := names[0]
		names = names[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			// The parent was walked through on the way here.
			dir = filepath.Dir(dir)
			if err := syscall.Stat(dir, &dirSt); err != nil {
				return sdk.Invalidf("%s %s: %s: %w", what, path, dir, err)
			}
			continue
		}
		next := filepath.Join(dir, name)
		var st syscall.Stat_t
		if err := syscall.Lstat(next, &st); errors.Is(err, syscall.ENOENT) {
			return nil // the open that follows says so
		} else if err != nil {
			return sdk.Invalidf("%s %s: %s: %w", what, path, next, err)
		}
		if p := rule.Problem(&dirSt); p != "" && !rootsStickyEntry(&dirSt, &st) {
			return sdk.Invalidf("%s %s: directory %s on its path %s (whoever can write it can swap what the path leads to)", what, path, dir, p)
		}
		if st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
			if links++; links > maxLinks {
				return sdk.Invalidf("%s %s: too many symlinks", what, path)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return sdk.Invalidf("%s %s: %w", what, path, err)
			}
			if filepath.IsAbs(target) {
				dir, dirSt = "/", rootSt
			}
			names = append(strings.Split(target, "/"), names...)
			continue
		}
		dir, dirSt = next, st
	}
	return nil
}

// rootsStickyEntry: a sticky directory of root's, in which entry, being
// root's, can be renamed or removed by root alone.
func rootsStickyEntry(dir, entry *syscall.Stat_t) bool {
	return dir.Mode&syscall.S_ISVTX != 0 && dir.Uid == 0 && entry.Uid == 0
}
