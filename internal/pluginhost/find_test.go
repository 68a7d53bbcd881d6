package pluginhost

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/subhost/subhost/sdk"
)

func TestSearchPathOrder(t *testing.T) {
	env := map[string]string{PathEnv: "/env/a::/env/b"}
	dirs := SearchPath([]string{"/flag"}, SiteDir, func(k string) string { return env[k] })
	want := []string{"/flag", "/env/a", "/env/b", SiteDir}
	if !slices.Equal(dirs[:4], want) {
		t.Errorf("search path %v, want it to start with %v", dirs, want)
	}
	if len(dirs) != 6 || filepath.Base(dirs[4]) != "plugins" || filepath.Base(dirs[5]) != "plugins" {
		t.Errorf("the directories beside the binary are missing: %v", dirs)
	}
}

func TestResolveFirstDirWinsAndRefusesBadNames(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		os.WriteFile(filepath.Join(d, "net-veth"), []byte("x"), 0o755)
	}
	os.WriteFile(filepath.Join(b, "only-b"), []byte("x"), 0o755)
	os.WriteFile(filepath.Join(a, "subhost-init"), []byte("x"), 0o755)
	if p, err := Resolve([]string{a, b}, "net-veth"); err != nil || p != filepath.Join(a, "net-veth") {
		t.Errorf("Resolve net-veth: %q %v", p, err)
	}
	if p, err := Resolve([]string{a, b}, "only-b"); err != nil || p != filepath.Join(b, "only-b") {
		t.Errorf("Resolve only-b: %q %v", p, err)
	}
	for _, bad := range []string{"nope", "../x", "a/b", "subhost-init", "-x", ""} {
		if _, err := Resolve([]string{a, b}, bad); !sdk.IsKind(err, sdk.KindInvalidConfig) {
			t.Errorf("Resolve %q: %v", bad, err)
		}
	}
	found, err := Available([]string{a, b})
	if err != nil || len(found) != 2 || found["net-veth"] != filepath.Join(a, "net-veth") {
		t.Errorf("Available: %v %v (subhost-init is not a stage)", found, err)
	}
}
