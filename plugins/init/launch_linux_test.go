package main

import (
	"os"
	"testing"
)

// TestWithExecutable: the launcher's executable goes to the child among
// its files, after them, and the path names it by the child's number (a
// number of the plugin's own could be overwritten in the child before
// the exec: internal/pluginhost's TestProcessRunsItsFileWhateverItsNumber).
func TestWithExecutable(t *testing.T) {
	var fs [3]*os.File
	for i := range fs {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fs[i] = f
	}
	exe, a, b := fs[0], fs[1], fs[2]
	path, all := withExecutable(exe, []*os.File{a, b})
	if path != "/proc/self/fd/5" || len(all) != 3 || all[0] != a || all[1] != b || all[2] != exe {
		t.Errorf("withExecutable: %s, %v; want /proc/self/fd/5 and a, b, exe", path, all)
	}
}
