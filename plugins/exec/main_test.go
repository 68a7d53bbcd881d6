package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary be a script's guard (the stage re-executes
// /proc/self/exe, here the test binary, as one: guard_linux.go) or a
// plugin to kill mid-call (dyingPlugin).
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == guardArg {
		guardMain()
	}
	if v := os.Getenv(dyingPluginEnv); v != "" {
		dyingPlugin(v)
	}
	os.Exit(m.Run())
}
