// Package testbin builds the programs that tests run: the CLI, stage
// plugins, probes run inside a guest, the guest's init. Each is built as
// the Makefile builds the shipped binaries (static, -trimpath, stripped,
// without gRPC's tracing),
// so that what a test measures or trusts is what a user installs.
package testbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Build builds the Go package pkg, a path relative to the module's root
// such as "./plugins/init", to out, creating out's directory. The
// directory and the program are mode 0755: the runner trusts only plugin
// directories that no one but their owner can write.
func Build(out, pkg string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "grpcnotrace", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
	}
	return os.Chmod(out, 0o755)
}

// MustBuild builds pkg into a temporary directory of the test's, named
// name, and returns its path; it fails the test when the build fails.
func MustBuild(t testing.TB, name, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	if err := Build(out, pkg); err != nil {
		t.Fatal(err)
	}
	return out
}

// ModuleRoot is the directory of the go.mod above the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
