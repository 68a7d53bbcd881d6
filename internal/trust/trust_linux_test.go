package trust

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

func TestFileAndPath(t *testing.T) {
	stagetest.RequireRoot(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mode    os.FileMode
		uid     int
		wantErr string
	}{
		{"ok", 0o644, 0, ""},
		{"ok-private", 0o600, 0, ""},
		{"ok-exec", 0o755, 0, ""},
		{"world-writable", 0o666, 0, "is writable by group or others (mode 0666): chmod go-w it"},
		{"group-writable", 0o620, 0, "is writable by group or others (mode 0620): chmod go-w it"},
		{"other-writable", 0o602, 0, "(mode 0602)"},
		{"not-root", 0o644, 65534, "is owned by uid 65534, not root: chown root it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(p, tt.uid, tt.uid); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for how, err := range map[string]error{"File": File(f, "config"), "Path": Path(p, "config")} {
				if tt.wantErr == "" {
					if err != nil {
						t.Errorf("%s: %v", how, err)
					}
					continue
				}
				if err == nil {
					t.Fatalf("%s: no error, want %q", how, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "config "+p+" ") {
					t.Errorf("%s: error %q, want config %s ... %q", how, err, p, tt.wantErr)
				}
				if !sdk.IsKind(err, sdk.KindInvalidConfig) {
					t.Errorf("%s: kind %v, want invalid config", how, sdk.KindOf(err))
				}
			}
		})
	}
}

func TestPathDirectory(t *testing.T) {
	stagetest.RequireRoot(t)
	dir := t.TempDir()
	sub := filepath.Join(dir, "plugins")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Path(sub, "plugin directory"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sub, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	err := Path(sub, "plugin directory")
	if err == nil || !strings.Contains(err.Error(), "(mode 1777)") {
		t.Fatalf("sticky world-writable dir: %v", err)
	}
	// A symlink is followed: the target is what is judged.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(sub, link); err != nil {
		t.Fatal(err)
	}
	if err := Path(link, "plugin directory"); err == nil {
		t.Fatal("symlink to a world-writable dir accepted")
	}
}

func TestPathMissing(t *testing.T) {
	err := Path(filepath.Join(t.TempDir(), "nope"), "pipeline directory")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing path: %v, want fs.ErrNotExist", err)
	}
}

func TestOpen(t *testing.T) {
	stagetest.RequireRoot(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "hook")
	if err := os.WriteFile(p, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p, "script")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.Chmod(p, 0o775)
	if _, err := Open(p, "script"); err == nil || !strings.HasPrefix(err.Error(), "script "+p+" is writable by group") {
		t.Errorf("group-writable file: %v", err)
	}
	os.Chmod(p, 0o755)
	os.Chmod(dir, 0o777)
	if _, err := Open(p, "script"); err == nil || !strings.HasPrefix(err.Error(), "script directory "+dir+" is writable by group") {
		t.Errorf("world-writable directory: %v", err)
	}
	os.Chmod(dir, 0o755)
	// A symlink in a good directory to a file in a world-writable one.
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, os.ModeSticky|0o777)
	if err := os.WriteFile(filepath.Join(open, "hook"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(open, "hook"), link); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(link, "script"); err == nil || !strings.HasPrefix(err.Error(), "script directory "+open+" is writable by group") {
		t.Errorf("symlink to a file in a world-writable directory: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "nope"), "script"); err == nil || !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Errorf("missing file: %v", err)
	}
}

// TestOpenByPathChecksTheWholePath: a root-owned script in a root-owned
// directory is still refused when a directory above them, or one a
// symlink on the way leads through, is someone else's: they could swap
// the directories between the check and the exec, which goes by path.
// Sticky directories of root's (/tmp, where the test's files are) are
// fine when the name in them is root's. Open, for plugins, which run from
// the descriptor it checked, does not walk: a build tree in a user's home
// still works.
func TestOpenByPathChecksTheWholePath(t *testing.T) {
	stagetest.RequireRoot(t)
	top := t.TempDir()
	os.Chmod(top, 0o755)
	site := filepath.Join(top, "site")
	hooks := filepath.Join(site, "hooks")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(hooks, "inv.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := OpenByPath(script, "script")
	if err != nil {
		t.Fatalf("a path of root's: %v", err)
	}
	f.Close()
	if err := os.Chown(site, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if f, err := Open(script, "plugin"); err != nil {
		t.Errorf("Open, for a plugin, below a user's directory: %v", err)
	} else {
		f.Close()
	}
	want := "script " + script + ": directory " + site + " on its path is owned by uid 65534, not root"
	if _, err := OpenByPath(script, "script"); err == nil || !strings.HasPrefix(err.Error(), want) || !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Errorf("a deploy user's directory above the hooks: %v, want %q", err, want)
	}
	// The same through a symlink of root's in a directory of root's.
	link := filepath.Join(top, "hooks")
	if err := os.Symlink("site/hooks", link); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenByPath(filepath.Join(link, "inv.sh"), "script"); err == nil || !strings.Contains(err.Error(), "directory "+site+" on its path") {
		t.Errorf("through a symlink into a deploy user's directory: %v", err)
	}
	os.Chown(site, 0, 0)
	if f, err := OpenByPath(filepath.Join(link, "inv.sh"), "script"); err != nil {
		t.Errorf("through a symlink, all root's: %v", err)
	} else {
		f.Close()
	}
	// A symlink someone else owns in a sticky directory can be replaced
	// by them.
	sticky := filepath.Join(top, "sticky")
	os.Mkdir(sticky, 0o755)
	os.Chmod(sticky, os.ModeSticky|0o777)
	theirs := filepath.Join(sticky, "hooks")
	if err := os.Symlink(hooks, theirs); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenByPath(filepath.Join(theirs, "inv.sh"), "script"); err == nil || !strings.Contains(err.Error(), "directory "+sticky+" on its path is writable by group or others") {
		t.Errorf("through someone else's symlink in a sticky directory: %v", err)
	}
	// A relative path is refused, not looked up from /.
	if _, err := OpenByPath("hooks/inv.sh", "script"); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("a relative path: %v", err)
	}
}
