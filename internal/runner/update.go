package runner

import (
	"context"
	"errors"
	"sort"
	"strings"

	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/sdk"
)

// Update changes settings of a running subhost in place (`subhost set`):
// each stage that is up is asked through the optional Update call with
// the changes; a stage that cannot change settings says so and is
// skipped. It returns, for each stage, the keys it applied. A key no
// stage applied is an invalid-config error: it can only take effect at
// the next boot, from the config.
//
// It takes no lock: the supervisor holds the subhost's lock for as long
// as the guest runs, and an update neither changes the recorded state
// nor brings anything up or down.
func (r *Runner) Update(ctx context.Context, name string, changes map[string]string) (map[string][]string, error) {
	d := r.dir(name)
	st, err := d.Load()
	if errors.Is(err, state.ErrNoState) {
		return nil, ErrNotRunning
	}
	if err != nil {
		return nil, err
	}
	if st.Status != state.Running && st.Status != state.Booting {
		return nil, sdk.Conflictf("subhost %q is %s, not running: change its config instead; it takes effect at the next boot", name, st.Status)
	}
	plan, err := r.planFromState(d)
	if err != nil {
		return nil, err
	}
	s := r.newSession(plan, d, nil)
	s.st = st
	defer s.killPlugins()
	applied := map[string][]string{}
	done := map[string]bool{}
	for i, ps := range plan.Stages {
		if i >= len(st.Stages) || st.Stages[i].Status != state.StageUp {
			continue
		}
		req := s.request(i, st.Record)
		req.Changes = changes
		keys, err := callFor(s, ctx, i, "update", ps.Timeout, func(ctx context.Context, stage sdk.Stage) ([]string, error) {
			return sdk.Update(ctx, stage, req)
		})
		if errors.Is(err, errors.ErrUnsupported) {
			continue
		}
		if err != nil {
			return applied, prefixStage(ps.Name, err)
		}
		if len(keys) > 0 {
			applied[ps.Name] = keys
		}
		for _, k := range keys {
			done[k] = true
		}
	}
	var left []string
	for k := range changes {
		if !done[k] {
			left = append(left, k)
		}
	}
	sort.Strings(left)
	if len(left) > 0 {
		var stages []string
		for _, ps := range plan.Stages {
			stages = append(stages, ps.Name)
		}
		return applied, sdk.Invalidf("no stage of subhost %q (%s) can change %s while it runs: set it in the config, for the next boot", name, strings.Join(stages, ", "), strings.Join(left, ", "))
	}
	return applied, nil
}
