package e2e

import "testing"

// TestExplainedFragments: a known error cut in two by another init
// script's output (and the NULs some scripts print) is still known; an
// unknown error beside a known one is not.
func TestExplainedFragments(t *testing.T) {
	lines := consoleLines("dmesg: read kernel buffer failed\r\n\x00: Operation not permitted\r\nsomething failed badly\r\nmount: /run: permission denied.\r\n")
	for i, want := range []bool{true, true, false, true} {
		if got := explained(lines, i); got != want {
			t.Errorf("explained(%q) = %v, want %v", lines[i], got, want)
		}
	}
}
