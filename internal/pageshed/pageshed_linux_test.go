package pageshed

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/subhost/subhost/internal/testbin"
)

func rssFileKB(t *testing.T) int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// TestShedGivesPagesBack: the executable's pages that start-up touched
// leave this process's resident set. TestShedInPIE runs it in a
// position-independent build, where Shed must leave them.
func TestShedGivesPagesBack(t *testing.T) {
	if typ, err := exeType("/proc/self/exe"); err != nil || typ != etExec {
		before := rssFileKB(t)
		Shed(Unmap)
		t.Logf("RssFile %d kB -> %d kB", before, rssFileKB(t))
		t.Skipf("not a fixed-address executable (type %d, %v): Shed does nothing", typ, err)
	}
	before := rssFileKB(t)
	Shed(Unmap)
	after := rssFileKB(t)
	t.Logf("RssFile %d kB -> %d kB", before, after)
	if after >= before {
		t.Errorf("RssFile did not fall: %d kB -> %d kB", before, after)
	}
}

// TestShedInPIE builds this package's tests as a position-independent
// executable and runs TestShedGivesPagesBack there: dropping the loader's
// relocated copies of read-only data would crash it.
func TestShedInPIE(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the tests")
	}
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "pageshed.test")
	build := exec.Command("go", "test", "-c", "-buildmode=pie", "-o", bin, "./internal/pageshed")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		if strings.Contains(string(out), "not supported") {
			t.Skipf("no PIE build here: %s", out)
		}
		t.Fatalf("go test -c -buildmode=pie: %v\n%s", err, out)
	}
	if typ, err := exeType(bin); err != nil || typ != etDyn {
		t.Fatalf("the -buildmode=pie build has ELF type %d (%v), want ET_DYN", typ, err)
	}
	out, err := exec.Command(bin, "-test.run", "^TestShedGivesPagesBack$", "-test.v", "-test.count=1").CombinedOutput()
	if err != nil {
		t.Fatalf("Shed in a PIE: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "SKIP: TestShedGivesPagesBack") {
		t.Errorf("Shed in a PIE: not skipped:\n%s", out)
	}
}

// TestExeType: exeType agrees with debug/elf on this test binary and on
// the shell, whichever way each was linked.
func TestExeType(t *testing.T) {
	for _, path := range []string{"/proc/self/exe", "/bin/sh"} {
		f, err := elf.Open(path)
		if err != nil {
			t.Logf("%s: %v", path, err)
			continue
		}
		want := uint16(f.Type)
		f.Close()
		if got, err := exeType(path); err != nil || got != want {
			t.Errorf("exeType(%s) = %d, %v; debug/elf says %d", path, got, err, want)
		}
	}
	if _, err := exeType("/nonexistent"); err == nil {
		t.Error("exeType of a missing file: no error")
	}
	if _, err := exeType("/proc/self/status"); err == nil {
		t.Error("exeType of a text file: no error")
	}
}

func TestElfType(t *testing.T) {
	header := func(data byte, typ ...byte) []byte {
		h := append([]byte("\x7fELF"), 2, data, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
		return append(h, typ...)
	}
	for _, c := range []struct {
		name string
		h    []byte
		want uint16
		ok   bool
	}{
		{"little-endian executable", header(1, 2, 0), etExec, true},
		{"little-endian PIE", header(1, 3, 0), etDyn, true},
		{"big-endian executable", header(2, 0, 2), etExec, true},
		{"big-endian PIE", header(2, 0, 3), etDyn, true},
		{"unknown byte order", header(0, 2, 0), 0, false},
		{"short", header(1, 2), 0, false},
		{"not ELF", append([]byte("#!/bin/sh\n"), make([]byte, 8)...), 0, false},
		{"empty", nil, 0, false},
	} {
		got, err := elfType(c.h)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%s: %d, %v; want %d (ok %v)", c.name, got, err, c.want, c.ok)
		}
	}
}
