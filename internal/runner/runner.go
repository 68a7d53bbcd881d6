package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/subhost/subhost/internal/pipeline"
	"github.com/subhost/subhost/internal/state"
	"github.com/subhost/subhost/internal/timeline"
	"github.com/subhost/subhost/sdk"
)

// Runner carries what every operation needs.
type Runner struct {
	Pipelines *pipeline.Set
	// Stages finds and starts the stages a pipeline names.
	Stages    Stages
	StateRoot string
	Logger    hclog.Logger
	// Progress, when set, gets one line per stage call with its duration.
	Progress io.Writer
	// Getenv reads the environment (DISKS, BRIDGES); nil = os.LookupEnv.
	Getenv func(string) (string, bool)
	// InterruptGrace overrides DefaultInterruptGrace.
	InterruptGrace time.Duration
	// Timeline, when set, gets a mark for each plugin start and each stage
	// call (`subhost run --timings`).
	Timeline *timeline.Recorder
	// CgroupParent, passed to every stage (sdk.Request.CgroupParent), is
	// the cgroup a service manager delegated to this supervisor.
	CgroupParent string
}

// DefaultInterruptGrace is how long a stage call that is under way when
// the operation is interrupted may still take to finish.
const DefaultInterruptGrace = 10 * time.Second

func (r *Runner) interruptGrace() time.Duration {
	if r.InterruptGrace > 0 {
		return r.InterruptGrace
	}
	return DefaultInterruptGrace
}

// DownTimeoutFloor is the least time a Down gets during rollback, even
// when the stage's own timeout is shorter: cleaning up matters more than
// speed.
const DownTimeoutFloor = 10 * time.Second

// session is one operation on one subhost: the lock, the state as it is
// being written, and the plugins started for it.
type session struct {
	r       *Runner
	plan    *Plan
	dir     state.Dir
	lock    *state.Lock
	st      *state.State
	mu      sync.Mutex
	plugins map[string]Instance
	// stMu guards st while the Ups of several stages run (upAll).
	stMu sync.Mutex
	// uses are the stages' declared uses of the boot record, as their
	// plugins told them (validate, learnUse); a stage missing here runs
	// alone.
	uses     map[int]*sdk.RecordUse
	starting map[string]*sync.Mutex
	// retiring counts plugins being killed in the background (retire):
	// the session ends only when they are gone.
	retiring sync.WaitGroup
	// prestarts counts plugin starts for a stop under way in the
	// background (prestartForDown).
	prestarts sync.WaitGroup
	// others are the other subhosts up on this host, as every stage's
	// request tells them, once othersRead is closed. Each one's state
	// file is read (milliseconds on a host with a hundred subhosts): in
	// the background from the session's start, since no request is made
	// before its plugins have started.
	others     []sdk.Neighbour
	othersRead chan struct{}
}

func (r *Runner) dir(name string) state.Dir {
	return state.Dir{Root: r.StateRoot, Name: name}
}

// open takes the subhost's lock for an operation.
func (r *Runner) open(plan *Plan, operation string) (*session, error) {
	d := r.dir(plan.Name)
	lock, err := d.TryLock(operation)
	if err != nil {
		return nil, err
	}
	s := r.newSession(plan, d, lock)
	st, err := d.Load()
	switch {
	case errors.Is(err, state.ErrNoState):
		s.st = nil
	case err != nil:
		lock.Release()
		return nil, err
	default:
		s.st = st
	}
	return s, nil
}

func (r *Runner) newSession(plan *Plan, d state.Dir, lock *state.Lock) *session {
	s := &session{
		r: r, plan: plan, dir: d, lock: lock,
		plugins:    map[string]Instance{},
		othersRead: make(chan struct{}),
	}
	go func() {
		defer close(s.othersRead)
		s.others = state.Others(r.StateRoot, plan.Name)
	}()
	return s
}

// close kills every plugin and releases the lock.
func (s *session) close() {
	s.killPlugins()
	s.lock.Release()
}

// killPlugins kills every plugin of the session, concurrently, and
// returns when all are gone, those retired before included: each Kill
// waits for its process to be reaped.
func (s *session) killPlugins() {
	s.prestarts.Wait()
	s.mu.Lock()
	plugins := s.plugins
	s.plugins = map[string]Instance{}
	s.mu.Unlock()
	for _, p := range plugins {
		s.retiring.Add(1)
		go func() {
			defer s.retiring.Done()
			p.Kill()
		}()
	}
	s.retiring.Wait()
}

// retire kills stage i's plugin in the background once the operation
// needs it no more, so that its exit (a Go process's teardown, most of a
// millisecond of CPU) overlaps the next stages' calls instead of adding
// to the end. Should it be needed after all (a rollback), plugin starts
// another.
func (s *session) retire(i int) {
	name := s.plan.Stages[i].Name
	s.mu.Lock()
	p := s.plugins[name]
	delete(s.plugins, name)
	s.mu.Unlock()
	if p == nil {
		return
	}
	s.retiring.Add(1)
	go func() {
		defer s.retiring.Done()
		p.Kill()
	}()
}

// newState starts a state for the plan with every stage not started.
func (s *session) newState() *state.State {
	st := &state.State{
		Name:     s.plan.Name,
		Pipeline: s.plan.Pipeline.Name,
		Home:     s.plan.Subhost.Home,
		OnExit:   s.plan.Pipeline.OnExit,
		Status:   state.Booting,
		Subhost:  s.plan.Subhost,
		Started:  time.Now().UTC(),
	}
	for _, ps := range s.plan.Stages {
		st.Stages = append(st.Stages, state.Stage{Name: ps.Name, Plugin: ps.Plugin, Path: ps.Path, Params: ps.Params, Status: state.StageNotStarted})
	}
	return st
}

func (s *session) save() error {
	if err := s.dir.Save(s.st); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// plugin returns a running plugin for the stage, starting one if there is
// none or the last one died.
func (s *session) plugin(ctx context.Context, i int) (Instance, error) {
	ps := s.plan.Stages[i]
	// One start at a time per stage: two callers racing here would start
	// two plugins and lose track of one.
	s.mu.Lock()
	if s.starting == nil {
		s.starting = map[string]*sync.Mutex{}
	}
	if s.starting[ps.Name] == nil {
		s.starting[ps.Name] = &sync.Mutex{}
	}
	start := s.starting[ps.Name]
	s.mu.Unlock()
	start.Lock()
	defer start.Unlock()
	s.mu.Lock()
	p := s.plugins[ps.Name]
	s.mu.Unlock()
	if p != nil && !p.Exited() {
		return p, nil
	}
	if p != nil {
		p.Kill()
	}
	who := "stage " + ps.Name
	s.r.Timeline.Add(who, "start plugin "+ps.Path)
	p, err := s.r.Stages.Start(ctx, ps.Name, ps.Path, ps.SHA256)
	if err != nil {
		return nil, err
	}
	s.r.Timeline.Add(who, "plugin answered (handshake)")
	s.mu.Lock()
	s.plugins[ps.Name] = p
	s.mu.Unlock()
	return p, nil
}

// forget kills a plugin that misbehaved (hung past its timeout, or died)
// so the next call starts a fresh one.
func (s *session) forget(name string) {
	s.mu.Lock()
	p := s.plugins[name]
	delete(s.plugins, name)
	s.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// request builds a stage's request from the plan and the state.
func (s *session) request(i int, record sdk.BootRecord) *sdk.Request {
	<-s.othersRead
	ps := s.plan.Stages[i]
	req := &sdk.Request{
		Subhost: s.plan.Subhost,
		Stage:   ps.Name,
		Params:  ps.Params,
		Record:  record,
		Others:  s.others,

		CgroupParent: s.r.CgroupParent,
		StateDir:     s.r.StateRoot,
	}
	if s.st != nil {
		req.Console = s.st.Console
		if i < len(s.st.Stages) {
			req.State = s.st.Stages[i].State
		}
	}
	return req
}

// recordBefore is the boot record as the stages before stage i made it.
func (s *session) recordBefore(i int) (sdk.BootRecord, error) {
	var rec sdk.BootRecord
	if s.st == nil {
		return rec, nil
	}
	for j := 0; j < i && j < len(s.st.Stages); j++ {
		if s.st.Stages[j].Status != state.StageUp {
			continue
		}
		if err := rec.Merge(s.st.Stages[j].Result); err != nil {
			return rec, err
		}
	}
	return rec, nil
}

// call runs one stage call with the stage's timeout, and turns transport
// failures into errors that say what happened. A stage that timed out,
// panicked or died is killed, so it can neither keep working nor linger.
// Its errors do not name the stage: the caller does, once (prefixStage).
func (s *session) call(ctx context.Context, i int, what string, timeout time.Duration, fn func(context.Context, sdk.Stage) error) error {
	_, err := callFor(s, ctx, i, what, timeout, func(ctx context.Context, st sdk.Stage) (struct{}, error) {
		return struct{}{}, fn(ctx, st)
	})
	return err
}

// callFor is call for a stage call that returns a result. The result
// comes back through the call's own channel: a call abandoned at its
// timeout may still finish later, and must then write nothing that the
// runner reads.
func callFor[T any](s *session, ctx context.Context, i int, what string, timeout time.Duration, fn func(context.Context, sdk.Stage) (T, error)) (T, error) {
	var zero T
	ps := s.plan.Stages[i]
	p, err := s.plugin(ctx, i)
	if err != nil {
		return zero, err
	}
	// An interrupt does not cut a call short at once: a stage in the middle
	// of making something (a guest being launched) must get to report it,
	// or the rollback cannot undo it. The call gets InterruptGrace more.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	returned := make(chan struct{})
	defer close(returned)
	go func() {
		select {
		case <-returned:
		case <-ctx.Done():
			select {
			case <-returned:
			case <-time.After(s.r.interruptGrace()):
				cancel()
			}
		}
	}()
	start := time.Now()
	s.r.Timeline.AddAt(start, "stage "+ps.Name, what)
	// The call runs apart so that a stage that ignores its context (a
	// plugin stuck in a system call, an in-process stage that hangs)
	// cannot hold the runner past the timeout.
	type outcome struct {
		v   T
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- outcome{err: errPanic{v}}
			}
		}()
		v, err := fn(cctx, p.Stage())
		done <- outcome{v, err}
	}()
	var res outcome
	select {
	case res = <-done:
	case <-cctx.Done():
		res.err = cctx.Err()
	}
	err = res.err
	elapsed := time.Since(start)
	s.r.Timeline.Add("stage "+ps.Name, what+" returned")
	s.progress(ps.Name, what, elapsed, err)
	if err == nil {
		return res.v, nil
	}
	var panicked errPanic
	switch {
	case errors.As(err, &panicked):
		s.forget(ps.Name)
		return zero, fmt.Errorf("%s panicked: %v; %s killed", what, panicked.v, p.Path())
	case errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		s.forget(ps.Name)
		return zero, fmt.Errorf("%s timed out after %s; %s killed", what, timeout, p.Path())
	case ctx.Err() != nil && cctx.Err() != nil:
		s.forget(ps.Name)
		return zero, fmt.Errorf("%s interrupted: %w", what, ctx.Err())
	}
	if _, typed := err.(*sdk.Error); typed || isJoined(err) {
		// A failing Up may still hand back the state of what it made.
		return res.v, err
	}
	switch {
	case p.Exited() || status.Code(err) == codes.Unavailable:
		s.forget(ps.Name)
		return zero, fmt.Errorf("%s died during %s (crashed or was killed)", p.Path(), what)
	}
	return res.v, fmt.Errorf("%s: %w", what, err)
}

// errPanic is a stage call that panicked (only an in-process stage can:
// a plugin that panics dies, and is reported as such).
type errPanic struct{ v any }

func (e errPanic) Error() string { return fmt.Sprint("panic: ", e.v) }

func isJoined(err error) bool {
	_, ok := err.(interface{ Unwrap() []error })
	return ok
}

func (s *session) progress(stage, what string, d time.Duration, err error) {
	s.r.Logger.Debug("stage call", sdk.LogKeySubhost, s.plan.Name, "stage", stage, "call", what, "took", d, sdk.LogKeyError, err)
	w := s.r.Progress
	if w == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "FAILED"
	}
	fmt.Fprintf(w, "  %-16s %-6s %-6s %6d ms\n", stage, what, result, d.Milliseconds())
}

// validate runs every stage's Validate: no side effects, and all of them
// before anything is changed.
//
// Validate has no side effects, so the stages are asked concurrently; the
// error reported is the first stage's in pipeline order.
func (s *session) validate(ctx context.Context, stages []int) error {
	return s.startAndValidate(ctx, stages, false)
}

// startAndValidate starts the stages' plugins and validates each stage as
// soon as its own plugin answers, rather than once all have: a boot's
// first stage calls then overlap the other plugins' start. Each answer
// also says how the stage uses the boot record (sdk.ValidateUse), for
// upAll. A plugin that cannot be started fails the whole, before any
// validation error; otherwise the error reported is the first stage's in
// pipeline order. start false only validates (the plugins start on first
// use anyway).
func (s *session) startAndValidate(ctx context.Context, stages []int, start bool) error {
	startErrs := make([]error, len(stages))
	errs := make([]error, len(stages))
	var wg sync.WaitGroup
	for k, i := range stages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if start {
				if _, startErrs[k] = s.plugin(ctx, i); startErrs[k] != nil {
					return
				}
			}
			req := s.request(i, sdk.BootRecord{})
			use, err := callFor(s, ctx, i, "validate", s.plan.Stages[i].Timeout, func(ctx context.Context, st sdk.Stage) (*sdk.RecordUse, error) {
				return sdk.ValidateUse(ctx, st, req)
			})
			if err == nil {
				err = s.setUse(i, use)
			}
			errs[k] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(startErrs...); err != nil {
		return err
	}
	for k, i := range stages {
		if errs[k] != nil {
			return prefixStage(s.plan.Stages[i].Name, errs[k])
		}
	}
	return nil
}

// learnUse asks stage i's plugin how its Up uses the boot record (its
// Description's Record), where no validation told it: for a stop, and for
// one stage run alone. A plugin that declares nothing, as one built
// before there was a way to, is run alone.
func (s *session) learnUse(ctx context.Context, i int) error {
	p, err := s.plugin(ctx, i)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, s.plan.Stages[i].Timeout)
	defer cancel()
	d, err := sdk.DescribeContext(cctx, p.Stage())
	if err != nil {
		return fmt.Errorf("describe: %w", err)
	}
	return s.setUse(i, d.Record)
}

// setUse records stage i's declared use of the boot record, once it is
// known to name only fields the record has.
func (s *session) setUse(i int, use *sdk.RecordUse) error {
	if err := use.Check(); err != nil {
		return sdk.Internalf("%s: %v", s.plan.Stages[i].Path, err)
	}
	s.stMu.Lock()
	defer s.stMu.Unlock()
	if s.uses == nil {
		s.uses = map[int]*sdk.RecordUse{}
	}
	s.uses[i] = use
	return nil
}

// knowsUse reports whether stage i's plugin was asked how it uses the
// boot record.
func (s *session) knowsUse(i int) bool {
	s.stMu.Lock()
	defer s.stMu.Unlock()
	_, ok := s.uses[i]
	return ok
}

// recordUse is stage i's declared use of the boot record; nil (it runs
// alone) when it declares none or was not asked.
func (s *session) recordUse(i int) *sdk.RecordUse {
	s.stMu.Lock()
	defer s.stMu.Unlock()
	return s.uses[i]
}

// prefixStage names the stage in an error from or about it, keeping its
// kind: the one place an operator's error line gets its stage name (the
// rule in sdk/errors.go).
func prefixStage(stage string, err error) error {
	if err == nil {
		return nil
	}
	var e *sdk.Error
	if errors.As(err, &e) && err == error(e) {
		return &sdk.Error{Kind: e.Kind, Msg: fmt.Sprintf("stage %q: %s", stage, e.Msg)}
	}
	if isJoined(err) {
		return &sdk.Error{Kind: sdk.KindOf(err), Msg: fmt.Sprintf("stage %q: %s", stage, err)}
	}
	return fmt.Errorf("stage %q: %w", stage, err)
}

// upFrom runs Up for stages first..last, each as soon as the stages it
// depends on are up (upAll), recording each before and after, then calls
// done (if any) to complete the state and saves it. A stage's result is
// written with the "starting" of the stages that wait for it, and the
// last one's with what done adds: nothing happens between the two but bookkeeping in memory,
// so a runner killed there leaves the same state either way, and a boot
// writes its state half as often. On failure, that last save's included,
// it rolls back every stage that may have left something (the failing
// ones included) and returns the first error in pipeline order.
func (s *session) upFrom(ctx context.Context, first int, done func()) error {
	var todo []int
	for i := first; i < len(s.plan.Stages); i++ {
		if s.skips(i) {
			s.st.Stages[i].Status, s.st.Stages[i].Error = state.StageSkipped, ""
			continue
		}
		todo = append(todo, i)
	}
	if err := s.upAll(ctx, todo); err != nil {
		return s.failUp(err)
	}
	if done != nil {
		done()
	}
	if err := s.save(); err != nil {
		return s.failUp(err)
	}
	return nil
}

// upAll runs Up for the stages todo (in pipeline order). A stage starts
// once every stage before it that it depends on is up (sdk.RecordUse:
// one that sets a boot-record field it reads, or any stage when either
// declares nothing), so stages that do not depend on each other come up
// at the same time; the stages that start together are recorded as
// starting in one save. After a failure nothing more starts; the Ups
// under way are waited for, and the first error in pipeline order is
// returned, with every stage that may have left something recorded so.
func (s *session) upAll(ctx context.Context, todo []int) error {
	after := make(map[int][]int, len(todo))
	for k, i := range todo {
		for _, j := range todo[:k] {
			if s.recordUse(i).DependsOn(s.recordUse(j)) {
				after[i] = append(after[i], j)
			}
		}
	}
	type outcome struct {
		i   int
		err error
	}
	finished := make(chan outcome)
	started, up := map[int]bool{}, map[int]bool{}
	errs := map[int]error{}
	running := 0
	unsaved := false // an Up has returned since the last save
	for {
		var ready []int
		if len(errs) == 0 {
			for _, i := range todo {
				if !started[i] && allIn(after[i], up) {
					ready = append(ready, i)
				}
			}
			switch err := ctx.Err(); {
			case len(ready) == 0:
			case err != nil:
				errs[ready[0]] = prefixStage(s.plan.Stages[ready[0]].Name, fmt.Errorf("interrupted before up: %w", err))
			default:
				unsaved = false // the save below records it
				if err := s.beginUp(ready); err != nil {
					errs[ready[0]] = err
					break
				}
				for _, i := range ready {
					started[i] = true
					running++
					go func() { finished <- outcome{i, s.upStarted(ctx, i)} }()
				}
			}
		}
		if running == 0 {
			break
		}
		if unsaved && len(ready) == 0 {
			// A stage is up while others are still coming up: on disk
			// before they go on changing the host, so that a runner
			// killed meanwhile leaves a stop its result to take down.
			unsaved = false
			s.stMu.Lock()
			err := s.save()
			s.stMu.Unlock()
			if err != nil && len(errs) == 0 {
				errs[todo[0]] = err
			}
		}
		o := <-finished
		unsaved = true
		running--
		if o.err != nil {
			errs[o.i] = o.err
		} else {
			up[o.i] = true
		}
	}
	for _, i := range todo {
		if errs[i] != nil {
			return errs[i]
		}
	}
	return nil
}

func allIn(list []int, set map[int]bool) bool {
	for _, x := range list {
		if !set[x] {
			return false
		}
	}
	return true
}

// failUp records a failed boot and rolls back every stage that may have
// left something; it returns err, or says what is left.
func (s *session) failUp(err error) error {
	s.st.Status = state.Failed
	s.st.Error = err.Error()
	// Even when this save fails the rollback goes on: it works from the
	// state in memory, and stop finds the rest.
	saveErr := s.save()
	if rbErr := s.rollback(); rbErr != nil {
		return fmt.Errorf("%w; rollback incomplete, run `subhost stop %s`: %v", err, s.plan.Name, errors.Join(saveErr, rbErr))
	}
	return err
}

// up runs stage i's Up, recording it before and after.
func (s *session) up(ctx context.Context, i int) error {
	if ctx.Err() != nil {
		return prefixStage(s.plan.Stages[i].Name, fmt.Errorf("interrupted before up: %w", ctx.Err()))
	}
	if err := s.beginUp([]int{i}); err != nil {
		return err
	}
	if err := s.upStarted(ctx, i); err != nil {
		return err
	}
	return s.save()
}

// beginUp records the stages as starting, in one save, before any of
// their Ups is called: a runner killed during one leaves them to stop.
func (s *session) beginUp(stages []int) error {
	s.stMu.Lock()
	defer s.stMu.Unlock()
	for _, i := range stages {
		st := &s.st.Stages[i]
		st.Status, st.Error = state.StagePending, ""
	}
	return s.save()
}

// upStarted calls stage i's Up, recorded as starting (beginUp), with the
// boot record as the stages before it made it (only the fields it reads,
// when it says which), and records the outcome in memory: the caller
// saves it at once when other Ups are still under way, else with the
// next stage's start. It may run beside other stages' upStarted: s.stMu
// guards the state.
func (s *session) upStarted(ctx context.Context, i int) error {
	use := s.recordUse(i)
	s.stMu.Lock()
	rec, err := s.upRecord(i, use)
	req := s.request(i, rec)
	s.stMu.Unlock()
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := callFor(s, ctx, i, "up", s.plan.Stages[i].Timeout, func(ctx context.Context, stg sdk.Stage) (*sdk.Result, error) {
		return stg.Up(ctx, req)
	})
	s.stMu.Lock()
	defer s.stMu.Unlock()
	st := &s.st.Stages[i]
	st.DurationMS = time.Since(start).Milliseconds()
	if err == nil && res == nil {
		err = sdk.Internalf("up returned no result")
	}
	if err == nil {
		if bad := use.Undeclared(res.Record); len(bad) > 0 {
			err = sdk.Internalf("up set %s in the boot record, which the stage does not declare it sets (its description's record writes %v)", strings.Join(bad, ", "), use.Writes)
		}
	}
	var whole sdk.BootRecord
	if err == nil {
		whole, err = s.recordWith(i, res.Record)
	}
	if err != nil {
		st.Status, st.Error = state.StageFailed, err.Error()
		if res != nil && res.State != nil {
			st.State = res.State
		}
		return prefixStage(st.Name, errors.Join(err, s.save()))
	}
	st.Status, st.Result, st.State = state.StageUp, res.Record, res.State
	// The whole record, not just up to this stage: on a reboot the
	// launcher is re-run with later stages still up.
	s.st.Record = whole
	if ctx.Err() != nil {
		// Interrupted while this stage finished: it is up in the state,
		// so the rollback takes it down too.
		return prefixStage(st.Name, fmt.Errorf("interrupted as it came up: %w", ctx.Err()))
	}
	return nil
}

// upRecord is the boot record that stage i's Up gets: as the stages
// before it made it, with only the fields it reads when it says which
// (use), so that it cannot come to depend on a field it does not wait
// for.
func (s *session) upRecord(i int, use *sdk.RecordUse) (sdk.BootRecord, error) {
	rec, err := s.recordBefore(i)
	if use != nil {
		rec = rec.Only(use.Reads)
	}
	return rec, err
}

// recordWith is the boot record of every stage that is up with stage i's
// result added, merged in pipeline order: a field that two stages set
// differently is a conflict, whichever of the two came up first.
func (s *session) recordWith(i int, result sdk.BootRecord) (sdk.BootRecord, error) {
	var rec sdk.BootRecord
	for j, st := range s.st.Stages {
		add := st.Result
		switch {
		case j == i:
			add = result
		case st.Status != state.StageUp:
			continue
		}
		if err := rec.Merge(add); err != nil {
			return rec, err
		}
	}
	return rec, nil
}

// skips reports whether stage i does not run for this subhost (its
// pipeline's when= and the config): its plugin is not even started. A
// stage that a boot before this one left up runs all the same, so that
// what it made is adopted or taken down by its own Down.
func (s *session) skips(i int) bool {
	if !s.plan.Stages[i].Skipped(s.plan.Subhost) {
		return false
	}
	return s.st == nil || i >= len(s.st.Stages) || !s.st.Stages[i].Owed()
}

// owed lists, last first, the stages that may have left objects.
func (s *session) owed() []int {
	var out []int
	for i := len(s.st.Stages) - 1; i >= 0; i-- {
		if s.st.Stages[i].Owed() {
			out = append(out, i)
		}
	}
	return out
}

// rollback runs Down for every owed stage, in reverse, with its own
// context: an interrupt that caused the rollback must not also stop it.
func (s *session) rollback() error {
	return s.downAll(context.Background())
}

// downAll runs Down for every owed stage, continuing past errors and
// reporting all of them, last stage's first. A stage comes down once
// every later stage that depends on it (sdk.RecordUse, as upAll) is
// down, so stages that came up together go down together; a stage that
// declares nothing goes down alone, as in a pipeline taken down one stage
// at a time, last first. The state is removed only when every Down
// succeeded, so that a failed teardown can be retried.
func (s *session) downAll(ctx context.Context) error {
	s.prestarts.Wait()
	owed := s.owed()
	synced := syncRoot(s.st.Record.Root)
	s.startForDown(ctx, owed)
	waits := make(map[int][]int, len(owed))
	holdsRoot := map[int]bool{}
	for k, j := range owed {
		for _, i := range owed[:k] { // the later stages
			if s.recordUse(i).DependsOn(s.recordUse(j)) {
				waits[j] = append(waits[j], i)
			}
		}
		holdsRoot[j] = s.st.Stages[j].Result.Root != ""
	}
	type outcome struct {
		i   int
		err error
	}
	finished := make(chan outcome)
	started, down := map[int]bool{}, map[int]bool{}
	errs := map[int]error{}
	running := 0
	for {
		for _, j := range owed {
			if started[j] || !allIn(waits[j], down) {
				continue
			}
			started[j] = true
			running++
			go func() {
				if holdsRoot[j] {
					<-synced // its root is no longer held open
				}
				err := s.down(ctx, j)
				s.retire(j)
				finished <- outcome{j, err}
			}()
		}
		if running == 0 {
			break
		}
		o := <-finished
		running--
		down[o.i] = true
		errs[o.i] = o.err
	}
	var all []error
	for _, i := range owed {
		if errs[i] != nil {
			all = append(all, errs[i])
		}
	}
	if len(all) > 0 {
		s.st.Status = state.Failed
		s.st.Error = errors.Join(all...).Error()
		if err := s.save(); err != nil {
			all = append(all, err)
		}
		return joinOneLine(all)
	}
	return s.dir.Remove()
}

// startForDown starts the plugins of the given stages and learns how each
// uses the boot record, all at once: what downAll needs. A plugin that
// cannot be started fails its Down, which says why; one that does not
// answer Describe goes down alone.
func (s *session) startForDown(ctx context.Context, stages []int) {
	var wg sync.WaitGroup
	for _, i := range stages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.plugin(ctx, i); err != nil || s.knowsUse(i) {
				return
			}
			if err := s.learnUse(ctx, i); err != nil {
				s.r.Logger.Debug("stage goes down alone", sdk.LogKeySubhost, s.plan.Name, "stage", s.plan.Stages[i].Name, sdk.LogKeyError, err)
			}
		}()
	}
	wg.Wait()
}

// syncRoot flushes the guest's root filesystem in the background and
// closes the returned channel when done. Unmounting it (the Down of the
// stage that mounted it) has to flush it anyway, and on a disk image that
// means an fsync of the image on the host: done here, it overlaps the
// Down of the stages above it. The root is opened without following a
// symlink; it is held open only until the flush is done, and the stage
// that owns it waits for that before its Down.
func syncRoot(root string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if root == "" {
			return
		}
		fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		unix.Syncfs(fd)
		unix.Close(fd)
	}()
	return done
}

// down runs stage i's Down and records the outcome; it may run beside
// other stages' (downAll): s.stMu guards the state.
func (s *session) down(ctx context.Context, i int) error {
	s.stMu.Lock()
	st := &s.st.Stages[i]
	req := s.request(i, s.st.Record)
	s.stMu.Unlock()
	timeout := max(s.plan.Stages[i].Timeout, DownTimeoutFloor)
	err := s.call(ctx, i, "down", timeout, func(ctx context.Context, stg sdk.Stage) error {
		return stg.Down(ctx, req)
	})
	s.stMu.Lock()
	defer s.stMu.Unlock()
	if err != nil {
		st.Error = err.Error()
		s.saveOrWarn(st.Name)
		return prefixStage(st.Name, err)
	}
	st.Status, st.Error, st.State, st.Result = state.StageDown, "", nil, sdk.BootRecord{}
	s.saveOrWarn(st.Name)
	return nil
}

// saveOrWarn saves the state after a stage's Down, and only logs a save
// that fails (a full /run): what the stage did is done either way, and
// what matters to the caller is whether it came down. Once every stage
// is down the state is removed, which works on a full file system; until
// then a stage still recorded as up is taken down again by the next
// stop, which finds nothing to do.
func (s *session) saveOrWarn(stage string) {
	if err := s.save(); err != nil {
		s.r.Logger.Warn("the state of a Down could not be saved", sdk.LogKeySubhost, s.plan.Name, "stage", stage, sdk.LogKeyError, err)
	}
}

func joinOneLine(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%d stages failed to come down: %s", len(errs), strings.Join(msgs, "; "))
}
