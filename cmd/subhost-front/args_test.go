package main

import (
	"strings"
	"testing"
)

func TestParseDetachedRun(t *testing.T) {
	for _, tc := range []struct {
		line    string
		name    string // "" when not for the front
		timings bool
	}{
		{"run --detach web", "web", false},
		{"run -d web", "web", false},
		{"run web -d", "web", false},
		{"--log-dir /l run -d -p pretend-boot --home /h --config /h/c web", "web", false},
		{"--log-dir=/l --state-dir /s run --pipeline=control -d web", "web", false},
		{"-vv --log-level debug run --timings -d web", "web", true},
		{"--plugin-dir /p --pipeline-file /f.hcl --etc-dir /e run -d web", "web", false},
		{"run --home run -d web", "web", false}, // the value is not the command
		{"run web", "", false},                  // foreground: the console
		{"run -d", "", false},
		{"run -d a b", "", false},
		{"status -d web", "", false},
		{"-d web", "", false},
		{"run -d --help web", "", false},
		{"run -d -h web", "", false},
		{"run -d --supervise web", "", false},
		{"run -d --no-such-flag web", "", false},
		{"run -dv web", "", false}, // shorthands together: the full CLI's to read
		{"run -d --detach=true web", "", false},
		{"run -d -- web", "", false},
		{"run -d --home", "", false},
		{"", "", false},
	} {
		run, ok := parseDetachedRun(strings.Fields(tc.line))
		if ok != (tc.name != "") || run.name != tc.name || (ok && run.timings != tc.timings) {
			t.Errorf("%q: got %+v, %v; want name %q, timings %v", tc.line, run, ok, tc.name, tc.timings)
		}
	}
}
