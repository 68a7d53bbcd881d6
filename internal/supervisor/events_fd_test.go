package supervisor

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// eventsFDChild, set in a child of this test binary, makes it report
// what eventsPipe finds on its descriptor 3 and exit.
const eventsFDChild = "SUBHOST_TEST_EVENTS_FD_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(eventsFDChild) == "1" {
		fmt.Println(eventsPipe() != nil)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Descriptor 3 is the supervisor's report pipe only when it is a pipe: a
// supervisor that subhost-monitor executes again may find there a file
// opened at its start (the Go runtime's cgroup files), which it must
// neither write to nor close.
func TestEventsPipeOnlyWhenDescriptor3IsAPipe(t *testing.T) {
	file, err := os.CreateTemp(t.TempDir(), "not-events")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, tc := range []struct {
		name string
		fd3  *os.File
		want string
	}{
		{"a pipe", w, "true"},
		{"a regular file", file, "false"},
		{"nothing", nil, "false"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), eventsFDChild+"=1")
		if tc.fd3 != nil {
			cmd.ExtraFiles = []*os.File{tc.fd3}
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("descriptor 3 is %s: eventsPipe found one: %s, want %s", tc.name, got, tc.want)
		}
	}
}
