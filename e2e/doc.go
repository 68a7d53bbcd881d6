// Package e2e holds subhost's end-to-end tests: the real binaries (bin/subhost
// and its plugins, from $SUBHOST_BIN or built into a temporary directory
// with the Makefile's layout) booting busybox guests from disk images, with
// bridges only in throwaway network namespaces, as root, and a leak check
// (stagetest.NoLeaks) around every test.
//
// harness_test.go is the shared harness: env (one test's state directory,
// subhost names, homes, commands, pty sessions) that the pretend-boot,
// supervision and control/site-stage tests all use. Guest roots, images,
// namespaces and scratch filesystems come from internal/testguest.
//
// Run: `make test`, or `go test -p 1 -count=1 ./e2e/` as root.
package e2e
