// Command teststage is a stage plugin for the runner's integration tests
// and the CLI's. Its
// parameters say how to misbehave in Up: behavior = ok | fail | invalid |
// exit | panic | hang | slow (one second); down = ok | fail. It appends "STAGE CALL" lines to
// the file named by the parameter log, and contributes Extra[STAGE]=up to
// the boot record, noting which earlier stages it saw there.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/subhost/subhost/sdk"
)

type stage struct{}

var _ sdk.Stage = stage{}

func (stage) Describe() sdk.Description {
	return sdk.Description{Name: "teststage", Version: "0.1", Summary: "a stage that misbehaves on request"}
}

func note(req *sdk.Request, call string) {
	path := req.Params["log"]
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", req.Stage, call)
}

func (stage) Validate(_ context.Context, req *sdk.Request) error {
	note(req, "validate")
	if req.Params["behavior"] == "invalid" {
		return sdk.Invalidf("stage %s: parameter behavior: invalid on request", req.Stage)
	}
	return nil
}

func (stage) Up(ctx context.Context, req *sdk.Request) (*sdk.Result, error) {
	var seen []string
	for k := range req.Record.Extra {
		seen = append(seen, k)
	}
	slices.Sort(seen)
	note(req, "up saw="+strings.Join(seen, ","))
	state, _ := json.Marshal(map[string]string{"stage": req.Stage})
	res := &sdk.Result{Record: sdk.BootRecord{Extra: map[string]string{req.Stage: "up"}}, State: state}
	switch req.Params["behavior"] {
	case "fail":
		return res, sdk.Conflictf("stage %s fails on request", req.Stage)
	case "exit":
		os.Exit(3)
	case "panic":
		panic("teststage panics on request")
	case "hang":
		time.Sleep(time.Hour) // ignores ctx, as a stuck plugin would
	case "slow":
		time.Sleep(time.Second) // finishes after an interrupt
	}
	return res, nil
}

func (stage) Down(_ context.Context, req *sdk.Request) error {
	if len(req.State) > 0 {
		note(req, "down state=up")
	} else {
		note(req, "down")
	}
	if req.Params["down"] == "fail" {
		return sdk.Internalf("stage %s: down fails on request", req.Stage)
	}
	return nil
}

func (stage) Check(_ context.Context, req *sdk.Request) error {
	note(req, "check")
	if len(req.State) == 0 {
		return sdk.NotFoundf("stage %s is not up", req.Stage)
	}
	return nil
}

func main() { sdk.Main(stage{}) }
