package pipeline

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/subhost/subhost/internal/trust"
	"github.com/subhost/subhost/sdk"
)

// DefaultDir holds a site's pipeline files.
const DefaultDir = "/etc/subhost/pipelines"

// maxFileSize bounds a pipeline file.
const maxFileSize = 1 << 20

// LoadOptions says where pipelines come from.
type LoadOptions struct {
	// Dirs are searched for *.hcl files, each in sorted order. nil means
	// DefaultDir; an empty non-nil slice means none. A missing directory
	// is fine.
	Dirs []string
	// Files are read after the directories (--pipeline-file); they must
	// exist.
	Files []string
	// Getenv backs the env() function; nil means os.LookupEnv.
	Getenv func(string) (string, bool)
}

// Set is the pipelines known by name.
type Set struct {
	byName map[string]*Pipeline
}

// Load reads the built-in pipelines, then every *.hcl file of each
// directory, then Files. A pipeline defined in a file replaces a built-in
// one of the same name entirely; the same name defined in two files is an
// error naming both. Directories and files must be owned by root and not
// writable by group or others.
func Load(opts LoadOptions) (*Set, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.LookupEnv
	}
	dirs := opts.Dirs
	if dirs == nil {
		dirs = []string{DefaultDir}
	}
	builtins, err := parse(builtinHCL, "builtin.hcl", Builtin, getenv)
	if err != nil {
		return nil, sdk.Invalidf("built-in pipelines: %w", err)
	}
	s := &Set{byName: map[string]*Pipeline{}}
	for _, p := range builtins {
		s.byName[p.Name] = p
	}

	var files []string
	for _, dir := range dirs {
		names, err := hclFiles(dir)
		if err != nil {
			return nil, err
		}
		files = append(files, names...)
	}
	files = append(files, opts.Files...)

	fromFiles := map[string]*Pipeline{}
	for _, path := range files {
		src, err := readFile(path)
		if err != nil {
			return nil, err
		}
		ps, err := parse(src, path, path, getenv)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if prev, ok := fromFiles[p.Name]; ok {
				return nil, sdk.Invalidf("pipeline %q is defined in both %s and %s", p.Name, prev.where, p.where)
			}
			fromFiles[p.Name] = p
			s.byName[p.Name] = p
		}
	}
	return s, nil
}

// hclFiles lists a pipeline directory's *.hcl files in sorted order, after
// checking the directory can be trusted.
func hclFiles(dir string) ([]string, error) {
	if err := trust.Path(dir, "pipeline directory"); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, sdk.Invalidf("pipeline directory %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		// As the shell's *.hcl: not hidden files, such as an editor's
		// lock (.#site.hcl, a dangling symlink while root edits site.hcl).
		if strings.HasSuffix(e.Name(), ".hcl") && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(out)
	return out, nil
}

// readFile reads a pipeline file after checking, on the opened file, that
// it is a regular file that can be trusted.
func readFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, sdk.Invalidf("pipeline file %s does not exist", path)
		}
		return nil, sdk.Invalidf("pipeline file %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, sdk.Internalf("pipeline file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, sdk.Invalidf("pipeline file %s is not a regular file", path)
	}
	if err := trust.File(f, "pipeline file"); err != nil {
		return nil, err
	}
	src, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, sdk.Invalidf("pipeline file %s: %w", path, err)
	}
	if len(src) > maxFileSize {
		return nil, sdk.Invalidf("pipeline file %s is larger than %d bytes", path, maxFileSize)
	}
	return src, nil
}

// Get returns a pipeline by name.
func (s *Set) Get(name string) (*Pipeline, error) {
	if p, ok := s.byName[name]; ok {
		return p, nil
	}
	return nil, sdk.Invalidf("unknown pipeline %q (known: %s)", name, strings.Join(s.Names(), ", "))
}

// Names returns the pipelines' names, sorted.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.byName))
	for name := range s.byName {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// All returns the pipelines sorted by name.
func (s *Set) All() []*Pipeline {
	out := make([]*Pipeline, 0, len(s.byName))
	for _, name := range s.Names() {
		out = append(out, s.byName[name])
	}
	return out
}
