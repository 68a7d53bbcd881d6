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
// It takes no lock, which a supervisor gives up while it only waits for
// its guest: an update neither changes the recorded state nor brings
// anything up or down, and one under way while the subhost stops can
// only fail.
func (r *Runner) Update(ctx context.Context, name string, changes map[string]string) (map[string][]string, error) {
	d := r.dir(name)
	st, err := d.Load()
	if errors.Is(err, state.ErrNoState) {
		return nil, noState(d)
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
	if err := s.checkKeys(ctx, changes); err != nil {
		return nil, err
	}
	applied := map[string][]string{}
	done := map[string]bool{}
	for _, i := range s.upStages() {
		ps := plan.Stages[i]
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

// upStages are the stages of the session's state that are up.
func (s *session) upStages() []int {
	var up []int
	for i := range s.plan.Stages {
		if i < len(s.st.Stages) && s.st.Stages[i].Status == state.StageUp {
			up = append(up, i)
		}
	}
	return up
}

// checkKeys refuses, before any stage changes anything, the keys that no
// stage up can change live: each lists its config variables in its
// Description, those its Update changes marked Live. A typo, or a
// variable only a boot can change, must not leave the other changes made
// and the command failed.
func (s *session) checkKeys(ctx context.Context, changes map[string]string) error {
	read, live := map[string]bool{}, map[string]bool{}
	var stages []string
	for _, i := range s.upStages() {
		ps := s.plan.Stages[i]
		stages = append(stages, ps.Name)
		d, err := callFor(s, ctx, i, "describe", ps.Timeout, func(ctx context.Context, stage sdk.Stage) (sdk.Description, error) {
			return sdk.DescribeContext(ctx, stage)
		})
		if err != nil {
			return prefixStage(ps.Name, err)
		}
		for _, v := range d.Vars {
			read[v.Name] = true
			live[v.Name] = live[v.Name] || v.Live
		}
	}
	var unknown, boot []string
	for k := range changes {
		switch {
		case !read[k]:
			unknown = append(unknown, k)
		case !live[k]:
			boot = append(boot, k)
		}
	}
	sort.Strings(unknown)
	sort.Strings(boot)
	switch {
	case len(unknown) > 0:
		return sdk.Invalidf("no stage of subhost %q (%s) reads %s: nothing was changed", s.plan.Name, strings.Join(stages, ", "), strings.Join(unknown, ", "))
	case len(boot) > 0:
		return sdk.Invalidf("%s of subhost %q can change only at its next boot: set it in the config; nothing was changed", strings.Join(boot, ", "), s.plan.Name)
	}
	return nil
}
