package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesAndLeavesNoTemporary(t *testing.T) {
	for name, write := range map[string]func(string, []byte, os.FileMode) error{"Write": Write, "Replace": Replace} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			for _, content := range []string{"one\n", "two\n"} {
				if err := write(p, []byte(content), 0o640); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(p)
				if err != nil || string(got) != content {
					t.Errorf("content %q %v, want %q", got, err, content)
				}
			}
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want 0640", fi.Mode().Perm())
			}
			if names, _ := os.ReadDir(dir); len(names) != 1 {
				t.Errorf("directory holds %v, want only f", names)
			}
			if err := write(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
				t.Errorf("a write into a missing directory succeeded")
			}
			// A rename that fails (a directory in the way) leaves no
			// temporary file behind.
			in := filepath.Join(dir, "d")
			if err := os.MkdirAll(filepath.Join(in, "x"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := write(in, []byte("x"), 0o600); err == nil {
				t.Errorf("replacing a non-empty directory succeeded")
			}
			if names, _ := os.ReadDir(dir); len(names) != 2 {
				t.Errorf("after a failed rename the directory holds %v, want f and d", names)
			}
		})
	}
}
