package guestroot

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/sdk/stagetest"
)

// hostile builds a guest root whose entries point at host paths, and a
// marker directory and file outside the root that must stay untouched.
func hostile(t *testing.T) (root, outDir, outFile string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "root")
	outDir = filepath.Join(base, "outside")
	outFile = filepath.Join(base, "outside-file")
	for _, d := range []string{root, outDir, filepath.Join(root, "real")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(outFile, []byte("marker\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"proc":    outDir, // absolute, to the host
		"sys":     "/sys", // the host's sysfs by name
		"dev":     "real", // relative, stays inside: still refused
		"run":     "../../../../../" + outDir,
		"sbin":    outDir,
		"bin":     "usr/bin", // like a merged-/usr guest
		"usr/bin": "",
	}
	for name, target := range links {
		p := filepath.Join(root, name)
		if target == "" {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	return root, outDir, outFile
}

func unchanged(t *testing.T, outDir, outFile string) {
	t.Helper()
	entries, err := os.ReadDir(outDir)
	if err != nil || len(entries) != 0 {
		t.Errorf("outside directory changed: %v %v", entries, err)
	}
	if b, err := os.ReadFile(outFile); err != nil || string(b) != "marker\n" {
		t.Errorf("outside file changed: %q %v", b, err)
	}
}

func TestMountDirRefusesSymlinks(t *testing.T) {
	root, outDir, outFile := hostile(t)
	r, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, p := range []string{"/proc", "/sys", "/dev", "/run", "/dev/pts", "/sbin/x"} {
		f, err := r.MountDir(p, 0o755)
		var se *SymlinkError
		if !errors.As(err, &se) {
			t.Errorf("MountDir(%q) = %v, %v; want a SymlinkError", p, f, err)
			continue
		}
		if want := "/" + strings.Split(p, "/")[1]; se.Path != want {
			t.Errorf("MountDir(%q): error names %q", p, se.Path)
		}
		t.Logf("MountDir(%q): %v", p, err)
	}
	// A missing directory is created inside; an existing one is opened.
	f, err := r.MountDir("/newdir/sub", 0o711)
	if err != nil {
		t.Fatalf("MountDir(/newdir/sub): %v", err)
	}
	f.Close()
	if st, err := os.Stat(filepath.Join(root, "newdir/sub")); err != nil || !st.IsDir() {
		t.Errorf("newdir/sub not created inside the root: %v", err)
	}
	// A file where a directory must be.
	if err := os.WriteFile(filepath.Join(root, "tmp"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var nd *NotDirError
	if _, err := r.MountDir("/tmp", 0o755); !errors.As(err, &nd) {
		t.Errorf("MountDir(/tmp) on a file: %v, want a NotDirError", err)
	}
	unchanged(t, outDir, outFile)
}

func TestInstallFile(t *testing.T) {
	stagetest.RequireRoot(t) // the file must end up owned by root
	root, outDir, outFile := hostile(t)
	r, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// /sbin -> the outside directory, which does not exist inside the
	// root: refused.
	_, err = r.InstallFile("/sbin/subhost-init", []byte("v1"), 0o755)
	if err == nil {
		t.Fatalf("InstallFile via a dangling symlinked /sbin succeeded")
	}
	t.Logf("dangling /sbin: %v", err)
	unchanged(t, outDir, outFile)

	// Once it exists inside the root, /sbin resolves to it, inside.
	if err := os.MkdirAll(filepath.Join(root, outDir), 0o755); err != nil {
		t.Fatal(err)
	}
	wrote, err := r.InstallFile("/sbin/subhost-init", []byte("v1"), 0o755)
	if err != nil || !wrote {
		t.Fatalf("InstallFile via a symlinked /sbin: %v, %v", wrote, err)
	}
	unchanged(t, outDir, outFile)
	inside := filepath.Join(root, outDir, "subhost-init")
	if b, err := os.ReadFile(inside); err != nil || string(b) != "v1" {
		t.Errorf("expected the file confined at %s: %q %v", inside, b, err)
	}

	// Merged /usr: /bin -> usr/bin.
	if _, err := r.InstallFile("/bin/tool", []byte("t"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/tool")); err != nil {
		t.Errorf("/bin/tool not in usr/bin: %v", err)
	}

	// A symlink at the final name, to a host file: replaced, not followed.
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(root, "etc/x")
	if err := os.Symlink(outFile, final); err != nil {
		t.Fatal(err)
	}
	if _, err := r.InstallFile("/etc/x", []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	unchanged(t, outDir, outFile)
	if st, err := os.Lstat(final); err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o755 {
		t.Errorf("/etc/x is not a regular 0755 file: %v %v", st, err)
	}

	// Same content: not rewritten (inode and mtime kept). Other content:
	// rewritten.
	var before, after unix.Stat_t
	unix.Lstat(final, &before)
	time.Sleep(10 * time.Millisecond)
	if wrote, err := r.InstallFile("/etc/x", []byte("v1"), 0o755); err != nil || wrote {
		t.Errorf("InstallFile with the same content: wrote=%v err=%v", wrote, err)
	}
	unix.Lstat(final, &after)
	if before.Ino != after.Ino || before.Mtim != after.Mtim {
		t.Errorf("same content rewrote the file")
	}
	if wrote, err := r.InstallFile("/etc/x", []byte("v2"), 0o755); err != nil || !wrote {
		t.Errorf("InstallFile with new content: wrote=%v err=%v", wrote, err)
	}
	// A FIFO at the final name does not block the comparison.
	fifo := filepath.Join(root, "etc/fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if wrote, err := r.InstallFile("/etc/fifo", []byte("v1"), 0o755); err != nil || !wrote {
		t.Errorf("InstallFile over a FIFO: wrote=%v err=%v", wrote, err)
	}
	// No temporary files left.
	for _, d := range []string{"etc", outDir} {
		entries, _ := os.ReadDir(filepath.Join(root, d))
		for _, e := range entries {
			if filepath.Ext(e.Name()) != "" && e.Name()[0] == '.' {
				t.Errorf("left behind %s/%s", d, e.Name())
			}
		}
	}
}

// A large file that differs only in a late chunk, or is longer on disk,
// is rewritten; one that matches is not.
func TestInstallFileComparesLargeFilesWhole(t *testing.T) {
	stagetest.RequireRoot(t) // the file must end up owned by root
	root := t.TempDir()
	r, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	content := bytes.Repeat([]byte("subhost-init "), 200_000) // 2.6 MB, several chunks
	if wrote, err := r.InstallFile("/sbin/big", content, 0o755); err != nil || !wrote {
		t.Fatalf("first install: wrote=%v err=%v", wrote, err)
	}
	if wrote, err := r.InstallFile("/sbin/big", content, 0o755); err != nil || wrote {
		t.Fatalf("same content: wrote=%v err=%v", wrote, err)
	}
	changed := bytes.Clone(content)
	changed[len(changed)-3] = 'X'
	if wrote, err := r.InstallFile("/sbin/big", changed, 0o755); err != nil || !wrote {
		t.Fatalf("a change in the last chunk: wrote=%v err=%v", wrote, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "sbin/big")); !bytes.Equal(b, changed) {
		t.Fatalf("the file does not hold the new content")
	}
}

// BenchmarkInstallFileUnchanged is the cost of every boot's check that
// the guest's subhost-init is the current one (a 2 MB binary).
func BenchmarkInstallFileUnchanged(b *testing.B) {
	root := b.TempDir()
	r, err := Open(root)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	content := bytes.Repeat([]byte{0x7f, 'E', 'L', 'F'}, 500_000)
	if _, err := r.InstallFile("/sbin/subhost-init", content, 0o755); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(content)))
	for b.Loop() {
		if wrote, err := r.InstallFile("/sbin/subhost-init", content, 0o755); err != nil || wrote {
			b.Fatalf("wrote=%v err=%v", wrote, err)
		}
	}
}

// Inside reads a descriptor's path back from the kernel: one inside the
// root passes, one beside it (whose path only shares the root's prefix)
// and one above it are OutsideErrors naming what they resolved to.
func TestInside(t *testing.T) {
	base := t.TempDir()
	for _, d := range []string{"root/etc", "root-twin"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Open(filepath.Join(base, "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if want, _ := filepath.EvalSymlinks(filepath.Join(base, "root")); r.Path() != want {
		t.Errorf("Path() = %q, want %q", r.Path(), want)
	}
	open := func(p string) *os.File {
		f, err := os.OpenFile(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	// A path longer than kernelPath's first buffer is read whole.
	deep := "root"
	for range 6 {
		deep = filepath.Join(deep, strings.Repeat("d", 60))
	}
	if err := os.MkdirAll(filepath.Join(base, deep), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"root", "root/etc", deep} {
		if err := r.Inside(open(filepath.Join(base, p)), "/"+p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if got, err := kernelPath(open(filepath.Join(base, deep))); err != nil || got != filepath.Join(r.Path(), strings.TrimPrefix(deep, "root")) {
		t.Errorf("kernelPath of a %d-byte path: %q, %v", len(filepath.Join(r.Path(), deep)), got, err)
	}
	for _, p := range []string{"root-twin", "."} {
		err := r.Inside(open(filepath.Join(base, p)), "/x")
		var out *OutsideError
		if !errors.As(err, &out) || out.Root != r.Path() || !strings.HasPrefix(out.Got, "/") {
			t.Errorf("%s: got %v, want an OutsideError", p, err)
		}
	}
	// A descriptor no longer open is an error, not a path.
	f := open(filepath.Join(base, "root/etc"))
	f.Close()
	if err := r.Inside(f, "/etc"); err == nil {
		t.Error("closed descriptor: no error")
	}
}
