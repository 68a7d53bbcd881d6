package supervisor

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPendingLogHoldsUntilTheBootBegins(t *testing.T) {
	l := NewPendingLog()
	l.Write([]byte("validated\n"))
	l.Write([]byte("plugin started\n"))
	if l.IsOpen() {
		t.Fatal("open before flushTo")
	}
	path := filepath.Join(t.TempDir(), "x.supervisor.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := l.flushTo(f); err != nil {
		t.Fatal(err)
	}
	l.Write([]byte("stage up\n"))
	l.Abandon(os.Stderr) // too late: the log is open
	l.Write([]byte("guest runs\n"))
	got, _ := os.ReadFile(path)
	if want := "validated\nplugin started\nstage up\nguest runs\n"; string(got) != want || !l.IsOpen() {
		t.Errorf("log %q (open %v), want %q", got, l.IsOpen(), want)
	}
}

func TestPendingLogAbandoned(t *testing.T) {
	var shown bytes.Buffer
	l := NewPendingLog()
	l.Write([]byte("held\n"))
	l.Abandon(&shown)
	l.Write([]byte("after\n"))
	if shown.String() != "held\nafter\n" {
		t.Errorf("abandoned to a writer: %q", shown.String())
	}
	l = NewPendingLog()
	l.Write([]byte("held\n"))
	l.Abandon(nil)
	if n, err := l.Write([]byte("after\n")); n != 6 || err != nil {
		t.Errorf("a write after Abandon(nil): %d, %v", n, err)
	}
}

func TestPendingLogHoldsAtMost(t *testing.T) {
	l := NewPendingLog()
	line := []byte(strings.Repeat("x", 1023) + "\n")
	for range maxHeld/len(line) + 10 {
		if n, err := l.Write(line); n != len(line) || err != nil {
			t.Fatalf("write: %d, %v", n, err)
		}
	}
	path := filepath.Join(t.TempDir(), "log")
	f, _ := os.Create(path)
	defer f.Close()
	if err := l.flushTo(f); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if len(got) > maxHeld+200 || !strings.HasSuffix(string(got), "is lost)\n") {
		t.Errorf("%d bytes held, ending %q", len(got), got[len(got)-60:])
	}
}
