package main

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/subhost/subhost/internal/trust"
	"github.com/subhost/subhost/internal/version"
	"github.com/subhost/subhost/sdk"
)

// stage runs the script of its `script` parameter for every call.
type stage struct{}

var _ sdk.Stage = (*stage)(nil)

func (*stage) Describe() sdk.Description {
	return sdk.Description{
		Name:    "exec",
		Version: version.Version,
		Summary: "run a site's executable (a shell script) with the verb validate, up, down or check",
		Params: []sdk.Param{{
			Name:     paramScript,
			Required: true,
			Doc: "absolute path of the executable, root's and writable by no one else, as its directory; " +
				"every parameter reaches it as SUBHOST_PARAM_<NAME>",
		}},
	}
}

// Validate runs the script's validate after checking the script itself;
// the request's boot record is empty, as for every stage.
func (s *stage) Validate(ctx context.Context, req *sdk.Request) error {
	_, err := call(ctx, verbValidate, req)
	return err
}

// Up runs the script's up: its extra joins the boot record, its state is
// kept for its next call.
func (s *stage) Up(ctx context.Context, req *sdk.Request) (*sdk.Result, error) {
	out, err := call(ctx, verbUp, req)
	if err != nil {
		return nil, err
	}
	return &sdk.Result{Record: sdk.BootRecord{Extra: out.Extra}, State: out.State}, nil
}

// Down runs the script's down; making it idempotent is the script's job,
// as for any stage.
func (s *stage) Down(ctx context.Context, req *sdk.Request) error {
	_, err := call(ctx, verbDown, req)
	return err
}

// Check runs the script's check: a non-zero exit means what its state
// says is gone.
func (s *stage) Check(ctx context.Context, req *sdk.Request) error {
	_, err := call(ctx, verbCheck, req)
	return err
}

// call checks the script and the request, runs the script with verb and
// reads its output. Its errors name the script (the runner names the
// stage) and carry the kind the runner acts on.
func call(ctx context.Context, verb string, req *sdk.Request) (scriptOutput, error) {
	path, err := trustedScript(req)
	if err != nil {
		return scriptOutput{}, err
	}
	if err := checkEnv(req); err != nil {
		return scriptOutput{}, err
	}
	stdout, err := runScript(ctx, sdk.Logger(ctx), path, verb, req)
	var exit *exitError
	switch {
	case errors.As(err, &exit) && verb == verbValidate && exit.code == 2:
		return scriptOutput{}, sdk.Invalidf("script %s %s: %s", path, verb, exit)
	case errors.As(err, &exit) && verb == verbCheck:
		return scriptOutput{}, sdk.NotFoundf("script %s %s: %s", path, verb, exit)
	case errors.As(err, &exit):
		return scriptOutput{}, sdk.Internalf("script %s %s: %s", path, verb, exit)
	case err != nil:
		return scriptOutput{}, err
	}
	out, err := parseOutput(stdout)
	if err != nil {
		return scriptOutput{}, sdk.Internalf("script %s %s: %w", path, verb, err)
	}
	return out, nil
}

// trustedScript returns the script a request names once it has passed the
// rule for plugins (internal/trust: it and its directory root's and
// writable by no one else) and is an executable regular file. Every
// failure is bad input, a missing script too: nothing was run.
func trustedScript(req *sdk.Request) (string, error) {
	path := req.Params[paramScript]
	switch {
	case path == "":
		return "", sdk.Invalidf("parameter %s is missing: want the absolute path of the executable to run", paramScript)
	case !filepath.IsAbs(path):
		return "", sdk.Invalidf("parameter %s %q is not an absolute path", paramScript, path)
	}
	f, err := trust.OpenByPath(path, "script")
	if err != nil {
		return "", sdk.Invalidf("%w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return "", sdk.Invalidf("script %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return "", sdk.Invalidf("script %s is not a regular file", path)
	case fi.Mode()&0o111 == 0:
		return "", sdk.Invalidf("script %s is not executable (mode %04o): chmod +x it", path, fi.Mode().Perm())
	}
	return path, nil
}
