// Command netstub is a test site plugin that replaces net-veth in a
// pipeline (stage "net-veth" { plugin = "netstub" }): it makes the
// subhost's network namespace itself with iproute2, puts a veth pair
// stub0/stub1 in it so a test can tell from inside the guest whose
// namespace it booted in, and contributes the namespace to the boot
// record.
package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strings"

	"github.com/subhost/subhost/sdk"
)

type netstub struct{}

var _ sdk.Stage = netstub{}

func (netstub) Describe() sdk.Description {
	return sdk.Description{Name: "netstub", Version: "0.0.1", Summary: "test stand-in for net-veth: a netns by iproute2 with a veth pair inside"}
}

func (netstub) Validate(_ context.Context, req *sdk.Request) error {
	if req.Subhost.Name == "" || strings.ContainsAny(req.Subhost.Name, "/.") {
		return sdk.Invalidf("netstub: bad subhost name %q", req.Subhost.Name)
	}
	return nil
}

func path(req *sdk.Request) string { return "/run/netns/" + req.Subhost.Name }

func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return sdk.Internalf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (n netstub) Up(ctx context.Context, req *sdk.Request) (*sdk.Result, error) {
	if err := n.Validate(ctx, req); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path(req)); errors.Is(err, fs.ErrNotExist) {
		if err := ip("netns", "add", req.Subhost.Name); err != nil {
			return nil, err
		}
		if err := ip("-n", req.Subhost.Name, "link", "add", "stub0", "type", "veth", "peer", "name", "stub1"); err != nil {
			ip("netns", "del", req.Subhost.Name)
			return nil, err
		}
	}
	return &sdk.Result{Record: sdk.BootRecord{Netns: path(req), Extra: map[string]string{"netstub": "yes"}}}, nil
}

func (netstub) Down(_ context.Context, req *sdk.Request) error {
	if _, err := os.Stat(path(req)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return ip("netns", "del", req.Subhost.Name)
}

func (netstub) Check(_ context.Context, req *sdk.Request) error {
	if _, err := os.Stat(path(req)); err != nil {
		return sdk.NotFoundf("netstub: %v", err)
	}
	return nil
}

func main() { sdk.Main(netstub{}) }
