package stagetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/subhost/subhost/sdk"
)

// Conformance runs the stage protocol's contract against stage, served
// through real RPC: Validate, Up, Check, Up again with the same result,
// Down, Down again, Down from an empty state, and Check failing after
// Down. It also fails the test if the sequence leaks a host object. req
// is the request for Up (Record: the boot record before this stage).
// A stage that declares its use of the boot record (Description.Record)
// gets, as from the runner, only the fields it reads, and fails when its
// Up sets one it does not declare.
func Conformance(t *testing.T, stage sdk.Stage, req *sdk.Request) {
	t.Helper()
	NoLeaks(t)
	s := Serve(t, stage)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := s.Validate(ctx, req); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	d, err := sdk.DescribeContext(ctx, s)
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if err := d.Record.Check(); err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if d.Record != nil {
		only := *req
		only.Record = req.Record.Only(d.Record.Reads)
		req = &only
	}
	first, err := s.Up(ctx, req)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	if bad := d.Record.Undeclared(first.Record); len(bad) > 0 {
		t.Errorf("Up set %v in the boot record, which the stage's description does not declare it sets (writes %v)", bad, d.Record.Writes)
	}
	after := *req
	after.State = first.State
	if err := after.Record.Merge(first.Record); err != nil {
		t.Fatalf("Up's record does not merge: %v", err)
	}
	downFromEmpty := after
	downFromEmpty.State = nil
	defer s.Down(context.Background(), &downFromEmpty) // whatever happens below

	if err := s.Check(ctx, &after); err != nil {
		t.Errorf("Check after Up: %v", err)
	}
	again := *req
	again.State = first.State
	second, err := s.Up(ctx, &again)
	if err != nil {
		t.Fatalf("Up again (must adopt what exists): %v", err)
	}
	if !reflect.DeepEqual(first.Record, second.Record) {
		t.Errorf("Up again gave another record:\nfirst  %+v\nsecond %+v", first.Record, second.Record)
	}
	after.State = second.State
	if err := s.Down(ctx, &after); err != nil {
		t.Errorf("Down: %v", err)
	}
	if err := s.Down(ctx, &after); err != nil {
		t.Errorf("Down again: %v", err)
	}
	if err := s.Down(ctx, &downFromEmpty); err != nil {
		t.Errorf("Down from an empty state: %v", err)
	}
	if err := s.Check(ctx, &after); err == nil {
		t.Errorf("Check after Down succeeded; it must report what is gone")
	}
}
