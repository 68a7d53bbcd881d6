package stagetest

import (
	"fmt"
	"os/exec"
	"slices"
	"testing"
)

func TestNetnsSetUpIsNotALeakButWhatIsOnItIs(t *testing.T) {
	for _, tc := range []struct {
		root, mountpoint, fstype string
		setUp                    bool
	}{
		{"/run/netns", "/run/netns", "ext4", true}, // /run on the root filesystem
		{"/netns", "/run/netns", "tmpfs", true},    // /run a tmpfs of its own
		{"/", "/run/netns", "tmpfs", false},        // a tmpfs mounted there is an object
		{"net:[4026532281]", "/run/netns/web1", "nsfs", false},
		{"/run/netns", "/run/netns/x", "ext4", false},
		{"/srv/netns", "/srv/netns", "ext4", false},
	} {
		if got := isNetnsSetUp(tc.root, tc.mountpoint, tc.fstype); got != tc.setUp {
			t.Errorf("isNetnsSetUp(%q, %q, %q) = %v, want %v", tc.root, tc.mountpoint, tc.fstype, got, tc.setUp)
		}
	}
}

func TestDiffIgnoresAPluginProcessThatWentAway(t *testing.T) {
	before := Snapshot{Plugins: []string{"41 /x/teststage"}, Mounts: []string{"/a tmpfs tmpfs"}}
	now := Snapshot{Plugins: []string{"42 /x/mount-loop"}}
	got := now.Diff(before)
	want := []string{"+ plugin process: 42 /x/mount-loop", "- mount: /a tmpfs tmpfs"}
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Errorf("Diff = %q, want %q", got, want)
	}
}

// A script process of the exec stage (its fixed environment names the
// stage), or one it left running, is seen as a plugin's would be.
func TestScriptProcessesAreSeen(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "SUBHOST_NAME=x", "SUBHOST_STAGE=hook"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	got, err := pluginProcesses()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d sleep 30", cmd.Process.Pid); !slices.Contains(got, want) {
		t.Errorf("pluginProcesses() = %q, want it to have %q", got, want)
	}
}
