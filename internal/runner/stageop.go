package runner

import (
	"context"
	"slices"

	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/sdk"
)

// Stage operations run by `subhost stage STAGE up|down|check NAME`.
const (
	OpUp    = "up"
	OpDown  = "down"
	OpCheck = "check"
)

// StageReport is what `subhost stage` prints: the request the stage got
// and what it answered.
type StageReport struct {
	Stage   string         `json:"stage"`
	Op      string         `json:"op"`
	Plugin  string         `json:"plugin"`
	Request *sdk.Request   `json:"request"`
	Result  *sdk.Result    `json:"result,omitempty"`
	Error   string         `json:"error,omitempty"`
	Kind    string         `json:"error_kind,omitempty"`
	Record  sdk.BootRecord `json:"record"`
}

// StageOp runs one stage alone against the subhost's recorded boot
// record: the way to debug a stage. Up records its result in the state as
// a run would; Down forgets the stage and, when no stage is left up,
// the subhost.
func (r *Runner) StageOp(ctx context.Context, plan *Plan, stage, op string) (*StageReport, error) {
	i := plan.Index(stage)
	if i < 0 {
		names := make([]string, len(plan.Stages))
		for k, s := range plan.Stages {
			names[k] = s.Name
		}
		return nil, sdk.Invalidf("pipeline %q has no stage %q (it has %v)", plan.Pipeline.Name, stage, names)
	}
	if !slices.Contains([]string{OpUp, OpDown, OpCheck}, op) {
		return nil, sdk.Invalidf("unknown stage operation %q: want up, down or check", op)
	}
	s, err := r.open(plan, "stage "+stage+" "+op)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if s.st != nil && s.st.Pipeline != plan.Pipeline.Name {
		return nil, sdk.Conflictf("subhost %q is recorded with pipeline %q, not %q", plan.Name, s.st.Pipeline, plan.Pipeline.Name)
	}
	if err := sameSubhost(plan, s.st); err != nil {
		return nil, err
	}
	p, err := s.plugin(ctx, i)
	if err != nil {
		return nil, err
	}
	// "reattached:NAME" when a plugin started by hand (--debug) serves it.
	report := &StageReport{Stage: stage, Op: op, Plugin: p.Path()}
	switch op {
	case OpUp:
		if err := s.validate(ctx, []int{i}); err != nil {
			return nil, err
		}
		fresh := s.st == nil
		if fresh {
			s.st = s.newState()
		}
		// The record it gets is the one it would get in a boot: what the
		// validation said it reads.
		rec, err := s.upRecord(i, s.recordUse(i))
		if err != nil {
			return nil, err
		}
		report.Request = s.request(i, rec)
		err = s.up(ctx, i)
		if err == nil {
			st := s.st.Stages[i]
			report.Result = &sdk.Result{Record: st.Result, State: st.State}
			s.st.Status = state.Booting
			if allUp(s.st) {
				s.st.Status = state.Running
			}
			err = s.save()
		} else if fresh && !s.st.Stages[i].Owed() {
			s.dir.Remove()
		}
		return s.finish(report, err)
	case OpDown:
		if s.st == nil {
			s.st = s.newState()
		}
		report.Request = s.request(i, s.st.Record)
		err := s.down(ctx, i)
		if err == nil {
			s.st.Record = s.recordOfUpStages()
			if len(s.owed()) == 0 {
				err = s.dir.Remove()
			} else {
				err = s.save()
			}
		}
		return s.finish(report, err)
	default:
		var rec sdk.BootRecord
		if s.st != nil {
			rec = s.st.Record
		}
		report.Request = s.request(i, rec)
		err := s.call(ctx, i, "check", plan.Stages[i].Timeout, func(ctx context.Context, st sdk.Stage) error {
			return st.Check(ctx, report.Request)
		})
		return s.finish(report, prefixStage(stage, err))
	}
}

func (s *session) finish(report *StageReport, err error) (*StageReport, error) {
	if s.st != nil {
		report.Record = s.st.Record
	}
	if err != nil {
		report.Error, report.Kind = err.Error(), sdk.KindOf(err).String()
	}
	return report, err
}

// allUp reports whether every stage is up, or skipped by its pipeline's
// when= (userns without PRIVATE_USERS, say): the subhost is running.
func allUp(st *state.State) bool {
	for _, s := range st.Stages {
		if s.Status != state.StageUp && s.Status != state.StageSkipped {
			return false
		}
	}
	return true
}

// recordOfUpStages merges the results of every stage that is up.
func (s *session) recordOfUpStages() sdk.BootRecord {
	var rec sdk.BootRecord
	for _, st := range s.st.Stages {
		if st.Status == state.StageUp {
			rec.Merge(st.Result)
		}
	}
	return rec
}
