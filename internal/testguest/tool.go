package testguest

import (
	"os"
	"os/exec"
	"testing"

	"github.com/subhost/subhost/sdk/stagetest"
)

// Tool finds a program a test needs on PATH. Without it the test skips,
// or fails when every test must run (SUBHOST_TEST_REQUIRE_ROOT=1, as CI
// sets it after installing the test's Debian package deb).
func Tool(t testing.TB, name, deb string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv(stagetest.RequireRootEnv) == "1" {
		t.Fatalf("%s is missing (apt-get install %s) and %s=1", name, deb, stagetest.RequireRootEnv)
	}
	t.Skipf("%s is missing (apt-get install %s)", name, deb)
	return ""
}
