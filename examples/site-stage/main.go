// Command motd is an example site stage: it writes /etc/motd inside the
// guest root. Every file operation goes through an os.Root opened on the
// guest root, which confines it there, symlinks included: a tenant's
// /etc/motd -> /etc/shadow makes Up fail instead of writing on the host.
// The stage owns /etc/motd while it is up; Down removes it only if it
// still holds our text.
package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"

	"github.com/subhost/subhost/sdk"
)

type motd struct{}

var _ sdk.Stage = motd{}

func (motd) Describe() sdk.Description {
	return sdk.Description{Name: "motd", Version: "1.0.0", Summary: "write /etc/motd inside the guest root",
		Params: []sdk.Param{{Name: "text", Doc: "the message", Default: "Welcome to NAME"}}}
}

// Validate runs before any stage is up, with an empty boot record: it can
// check only the parameters. Up checks the root.
func (motd) Validate(_ context.Context, req *sdk.Request) error {
	if t := req.Param("text", "x"); t == "" || strings.ContainsRune(t, 0) {
		return sdk.Invalidf("motd: parameter text %q: want some text, without NUL", t)
	}
	return nil
}

func text(req *sdk.Request) []byte {
	return []byte(req.Param("text", "Welcome to "+req.Subhost.Name) + "\n")
}

// ours reports whether the guest's /etc/motd holds our text.
func ours(root *os.Root, req *sdk.Request) bool {
	have, err := root.ReadFile("etc/motd")
	return err == nil && bytes.Equal(have, text(req))
}

func (m motd) Up(ctx context.Context, req *sdk.Request) (*sdk.Result, error) {
	if err := m.Validate(ctx, req); err != nil {
		return nil, err
	}
	if req.Record.Root == "" {
		return nil, sdk.Invalidf("motd: the boot record has no root; put stage %q after a mount stage", req.Stage)
	}
	root, err := os.OpenRoot(req.Record.Root)
	if err != nil {
		return nil, sdk.NotFoundf("motd: guest root: %w", err)
	}
	defer root.Close()
	if !ours(root, req) {
		err := root.MkdirAll("etc", 0o755)
		if err == nil {
			err = root.WriteFile("etc/motd", text(req), 0o644)
		}
		if err != nil {
			return nil, sdk.Conflictf("motd: write /etc/motd in %q: %w", req.Record.Root, err)
		}
	}
	return &sdk.Result{}, nil
}

func (motd) Down(_ context.Context, req *sdk.Request) error {
	root, err := os.OpenRoot(req.Record.Root)
	if req.Record.Root == "" || errors.Is(err, fs.ErrNotExist) {
		return nil // never mounted, or gone already
	} else if err != nil {
		return sdk.Internalf("motd: guest root: %w", err)
	}
	defer root.Close()
	if !ours(root, req) {
		return nil // gone, or no longer ours: leave it
	}
	return root.Remove("etc/motd")
}

func (motd) Check(_ context.Context, req *sdk.Request) error {
	root, err := os.OpenRoot(req.Record.Root)
	if err != nil {
		return sdk.NotFoundf("motd: guest root: %w", err)
	}
	defer root.Close()
	if !ours(root, req) {
		return sdk.NotFoundf("motd: /etc/motd in %q is missing or not ours", req.Record.Root)
	}
	return nil
}

func main() { sdk.Main(motd{}) }
