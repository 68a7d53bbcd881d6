package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// The stage only writes files under a directory the test makes, so these
// tests need no root: a site author runs them with a plain `go test`.

func request(root string, params map[string]string) *sdk.Request {
	return &sdk.Request{
		Subhost: sdk.Subhost{Name: "demo", Home: filepath.Dir(root)},
		Stage:   "motd",
		Params:  params,
		Record:  sdk.BootRecord{Root: root},
	}
}

func guestRoot(t *testing.T) string {
	root := filepath.Join(t.TempDir(), "live")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestConformance(t *testing.T) {
	stagetest.Conformance(t, motd{}, request(guestRoot(t), nil))
}

func TestUpWritesTextThroughRPC(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		params map[string]string
		want   string
	}{
		{nil, "Welcome to demo\n"},
		{map[string]string{"text": "Authorized use only."}, "Authorized use only.\n"},
	} {
		root := guestRoot(t)
		s := stagetest.Serve(t, motd{})
		req := request(root, tc.params)
		if _, err := s.Up(ctx, req); err != nil {
			t.Fatalf("Up: %v", err)
		}
		got, err := os.ReadFile(filepath.Join(root, "etc/motd"))
		if err != nil || string(got) != tc.want {
			t.Errorf("/etc/motd = %q, %v; want %q", got, err, tc.want)
		}
		if err := s.Check(ctx, req); err != nil {
			t.Errorf("Check: %v", err)
		}
		// The tenant changes it: Check says so, and Down leaves it alone.
		if err := os.WriteFile(filepath.Join(root, "etc/motd"), []byte("mine\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.Check(ctx, req); !sdk.IsKind(err, sdk.KindNotFound) {
			t.Errorf("Check of a changed motd: %v, want a not-found error", err)
		}
		if err := s.Down(ctx, req); err != nil {
			t.Errorf("Down: %v", err)
		}
		if got, _ := os.ReadFile(filepath.Join(root, "etc/motd")); string(got) != "mine\n" {
			t.Errorf("Down touched a motd that is no longer ours: %q", got)
		}
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	s := stagetest.Serve(t, motd{})
	for _, text := range []string{"", "a\x00b"} {
		req := request(guestRoot(t), map[string]string{"text": text})
		if err := s.Validate(ctx, req); !sdk.IsKind(err, sdk.KindInvalidConfig) {
			t.Errorf("Validate with text %q: %v, want invalid config", text, err)
		}
		if _, err := s.Up(ctx, req); !sdk.IsKind(err, sdk.KindInvalidConfig) {
			t.Errorf("Up with text %q: %v, want invalid config", text, err)
		}
		if _, err := os.Lstat(filepath.Join(req.Record.Root, "etc")); !os.IsNotExist(err) {
			t.Errorf("Up with text %q changed the root: %v", text, err)
		}
	}
	// The runner validates every stage with an empty boot record, before
	// any stage is up: that is fine. Up needs the root.
	req := request("", nil)
	if err := s.Validate(ctx, req); err != nil {
		t.Errorf("Validate with an empty boot record: %v", err)
	}
	if _, err := s.Up(ctx, req); !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Errorf("Up without a root: %v, want invalid config", err)
	}
	if err := s.Down(ctx, req); err != nil {
		t.Errorf("Down without a root must succeed: %v", err)
	}
	gone := request(filepath.Join(t.TempDir(), "never-mounted"), nil)
	if err := s.Down(ctx, gone); err != nil {
		t.Errorf("Down on a missing root must succeed: %v", err)
	}
}

// TestHostileRoot plants symlinks to host paths where the stage writes:
// nothing outside the guest root may change, whatever Up and Down do.
func TestHostileRoot(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, root, hostDir string)
	}{
		{"absolute /etc/motd", func(t *testing.T, root, hostDir string) {
			mkdir(t, filepath.Join(root, "etc"))
			symlink(t, filepath.Join(hostDir, "marker"), filepath.Join(root, "etc/motd"))
		}},
		{"relative /etc/motd", func(t *testing.T, root, hostDir string) {
			mkdir(t, filepath.Join(root, "etc"))
			rel, err := filepath.Rel(filepath.Join(root, "etc"), filepath.Join(hostDir, "marker"))
			if err != nil {
				t.Fatal(err)
			}
			symlink(t, rel, filepath.Join(root, "etc/motd"))
		}},
		{"absolute /etc", func(t *testing.T, root, hostDir string) {
			symlink(t, hostDir, filepath.Join(root, "etc"))
		}},
		{"relative /etc", func(t *testing.T, root, hostDir string) {
			rel, err := filepath.Rel(root, hostDir)
			if err != nil {
				t.Fatal(err)
			}
			symlink(t, rel, filepath.Join(root, "etc"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, hostDir := guestRoot(t), t.TempDir()
			marker := filepath.Join(hostDir, "marker")
			hostMotd := filepath.Join(hostDir, "motd")
			// The host's files hold exactly the text Down would remove.
			for _, p := range []string{marker, hostMotd} {
				if err := os.WriteFile(p, []byte("Welcome to demo\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			tc.plant(t, root, hostDir)
			s := stagetest.Serve(t, motd{})
			req := request(root, nil)
			if _, err := s.Up(ctx, req); err == nil {
				t.Errorf("Up through a symlink out of the root succeeded")
			}
			if err := s.Check(ctx, req); err == nil {
				t.Errorf("Check read through a symlink out of the root")
			}
			if err := s.Down(ctx, req); err != nil {
				t.Errorf("Down: %v", err)
			}
			for _, p := range []string{marker, hostMotd} {
				got, err := os.ReadFile(p)
				if err != nil || string(got) != "Welcome to demo\n" {
					t.Errorf("host file %s changed: %q, %v", p, got, err)
				}
			}
			if entries, _ := os.ReadDir(hostDir); len(entries) != 2 {
				t.Errorf("host dir holds %d entries, want the 2 it had", len(entries))
			}
		})
	}
}

func mkdir(t *testing.T, p string) {
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, p string) {
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}
