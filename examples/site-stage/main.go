// Command motd is an example site stage: it writes /etc/motd inside the
// guest root. Every file operation goes through the os.Root that
// sdk.Request.GuestRoot opens, which confines it to the guest's tree,
// symlinks included: a tenant's /etc/motd -> /etc/shadow makes Up fail
// instead of writing on the host. Down removes the file only if it still
// holds our text.
package main

import (
	"bytes"
	"context"
	"os"
	"strings"

	"github.com/subhost/subhost/sdk"
)

type motd struct{}

var _ sdk.Stage = motd{}

func (motd) Describe() sdk.Description {
	return sdk.Description{Name: "motd", Version: "1.0.0", Summary: "write /etc/motd inside the guest root",
		Params: []sdk.Param{{Name: "text", Doc: "the message", Default: "Welcome to NAME"}},
		// Up reads only the root and sets nothing in the boot record: it
		// runs beside the stages that do not set the root (the network,
		// the cgroups), and init still waits for it.
		Record: &sdk.RecordUse{Reads: []string{sdk.FieldRoot}}}
}

// Validate sees an empty boot record (no stage is up yet): parameters only.
func (motd) Validate(_ context.Context, req *sdk.Request) error {
	if t := req.Param("text", "x"); t == "" || strings.ContainsRune(t, 0) {
		return sdk.Invalidf("parameter text %q: want some text, without NUL", t)
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
	root, err := req.GuestRoot()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if !ours(root, req) {
		if err = root.MkdirAll("etc", 0o755); err == nil {
			err = root.WriteFile("etc/motd", text(req), 0o644)
		}
	}
	if err != nil {
		return nil, sdk.Conflictf("write /etc/motd in %q: %w", req.Record.Root, err)
	}
	return &sdk.Result{}, nil
}

func (motd) Down(_ context.Context, req *sdk.Request) error {
	root, err := req.GuestRoot()
	if err != nil {
		return nil // never mounted, or gone already: nothing of ours is left
	}
	defer root.Close()
	if !ours(root, req) {
		return nil // gone, or no longer ours: leave it
	}
	return root.Remove("etc/motd")
}

func (motd) Check(_ context.Context, req *sdk.Request) error {
	root, err := req.GuestRoot()
	if err != nil {
		return sdk.NotFoundf("%w", err)
	}
	defer root.Close()
	if !ours(root, req) {
		return sdk.NotFoundf("/etc/motd in %q is missing or not ours", req.Record.Root)
	}
	return nil
}

func main() { sdk.Main(motd{}) }
