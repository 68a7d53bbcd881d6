package state_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/sdk/stagetest"
)

// Emptying a state root left by an earlier boot never reaches into a
// mount below it: one there is this boot's (nothing a subhost mounted
// survived the reboot), so it and what holds it are left.
func TestEarlierBootsRootKeepsMountsBelowIt(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	if _, err := os.Stat("/proc/sys/kernel/random/boot_id"); err != nil {
		t.Skip("no boot ID on this kernel")
	}
	const earlier = "00000000-0000-4000-8000-000000000000"
	root := t.TempDir()
	held := filepath.Join(root, "web", "live")
	for _, d := range []string{held, filepath.Join(root, ".init")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("tmpfs", held, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(held, unix.MNT_DETACH) })
	for path, content := range map[string]string{
		filepath.Join(held, "mine"):              "this boot's",
		filepath.Join(root, "web", "state.json"): `{"schema":1,"boot_id":"` + earlier + `"}`,
		filepath.Join(root, ".init", "x.json"):   "{}",
		filepath.Join(root, ".boot_id"):          earlier + "\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := state.ForgetEarlierBoot(root); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(held, "mine")); err != nil || string(b) != "this boot's" {
		t.Errorf("the file in the mount below the root: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(root, ".init")); !os.IsNotExist(err) {
		t.Errorf("the earlier boot's stage files are still there (%v)", err)
	}
}
