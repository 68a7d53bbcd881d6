package trust

import (
	"io/fs"
	"os"
	"path/filepath"
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
// file. It is the rule for plugins and
// for the scripts the exec stage runs.
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
