package main

import "testing"

// An extra key that would print as a line of its own, or as a terminal
// escape, is quoted in `subhost status`.
func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"hook":           "hook",
		"rack é":         "rack é",
		"a\nstate: fine": `"a\nstate: fine"`,
		"\x1b[2Jcleared": `"\x1b[2Jcleared"`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %s, want %s", in, got, want)
		}
	}
}
