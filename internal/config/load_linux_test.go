package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

func writeConfig(t *testing.T, dir, src string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, "config")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoad(t *testing.T) {
	stagetest.RequireRoot(t)
	path := writeConfig(t, t.TempDir(), "IMG=/disks\nDISKS=( vda:1:$IMG/d1.raw )\n", 0o644)
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Path != path {
		t.Errorf("Path = %q", f.Path)
	}
	d := f.Vars["DISKS"]
	if len(d.Words) != 1 || d.Words[0] != "vda:1:/disks/d1.raw" || !d.IsArray || d.Origin != path+":2" {
		t.Errorf("DISKS = %#v", d)
	}
}

func TestLoadErrorNamesConfigLine(t *testing.T) {
	stagetest.RequireRoot(t)
	path := writeConfig(t, t.TempDir(), "X=1\nDISKS=$(id)\n", 0o644)
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "config:2:7: command substitution is not allowed in a config") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadRefuses(t *testing.T) {
	stagetest.RequireRoot(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string
		want  string
	}{
		{"symlink", func(t *testing.T, dir string) string {
			target := writeConfig(t, dir, "X=1\n", 0o644)
			link := filepath.Join(dir, "link")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "is a symlink, which subhost does not follow"},
		{"not-root", func(t *testing.T, dir string) string {
			p := writeConfig(t, dir, "X=1\n", 0o644)
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return p
		}, "is owned by uid 65534, not root: chown root it"},
		{"world-writable", func(t *testing.T, dir string) string {
			return writeConfig(t, dir, "X=1\n", 0o666)
		}, "is writable by group or others (mode 0666): chmod go-w it"},
		{"group-writable", func(t *testing.T, dir string) string {
			return writeConfig(t, dir, "X=1\n", 0o620)
		}, "is writable by group or others (mode 0620): chmod go-w it"},
		{"directory", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "config")
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}, "is not a regular file (a directory)"},
		{"fifo", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "config")
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, "is not a regular file (a FIFO)"},
		{"too-big", func(t *testing.T, dir string) string {
			return writeConfig(t, dir, "X="+strings.Repeat("x", MaxSize), 0o644)
		}, "is larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t, t.TempDir())
			_, err := Load(path)
			if err == nil {
				t.Fatal("accepted")
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "config "+path+" ") || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q, want config %s ... %q", msg, path, tt.want)
			}
			if !sdk.IsKind(err, sdk.KindInvalidConfig) {
				t.Errorf("kind %v, want invalid config", sdk.KindOf(err))
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	_, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
}
