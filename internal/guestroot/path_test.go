package guestroot

import (
	"slices"
	"testing"
)

func TestSplitGuestPath(t *testing.T) {
	good := map[string][]string{
		"/proc":     {"proc"},
		"dev/pts":   {"dev", "pts"},
		"/dev/pts/": {"dev", "pts"},
	}
	for in, want := range good {
		got, err := splitGuestPath(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("splitGuestPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/", "../etc", "/dev/../etc", "dev//pts", "./dev"} {
		if _, err := splitGuestPath(bad); err == nil {
			t.Errorf("splitGuestPath(%q) succeeded, want an error", bad)
		}
	}
}

func TestWithin(t *testing.T) {
	tests := []struct {
		root, p string
		want    bool
	}{
		{"/r", "/r", true},
		{"/r", "/r/proc", true},
		{"/r", "/rx/proc", false},
		{"/r", "/", false},
		{"/r", "/proc", false},
		{"/", "/anything", true},
	}
	for _, tt := range tests {
		if got := within(tt.root, tt.p); got != tt.want {
			t.Errorf("within(%q, %q) = %v, want %v", tt.root, tt.p, got, tt.want)
		}
	}
}
