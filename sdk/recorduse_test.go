package sdk_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// Every field of the boot record belongs to exactly one of the names a
// stage declares: Only with all of them is the whole record, and the
// records of the names one by one merge back into it. A field added to
// BootRecord and not to Only fails here.
func TestRecordFieldsCoverTheWholeRecord(t *testing.T) {
	var full sdk.BootRecord
	fill(t, reflect.ValueOf(&full).Elem(), "BootRecord")
	if got := full.Only(sdk.RecordFields); !reflect.DeepEqual(got, full) {
		t.Errorf("Only(every field) lost something:\ngot  %+v\nwant %+v", got, full)
	}
	if got := full.Fields(); !slices.Equal(got, sdk.RecordFields) {
		t.Errorf("Fields of a full record: %v", got)
	}
	var back sdk.BootRecord
	for _, f := range sdk.RecordFields {
		part := full.Only([]string{f})
		if got := part.Fields(); !slices.Equal(got, []string{f}) {
			t.Errorf("Only(%s) sets %v", f, got)
		}
		if err := back.Merge(part); err != nil {
			t.Fatalf("merge %s: %v", f, err)
		}
	}
	if !reflect.DeepEqual(back, full) {
		t.Errorf("the fields one by one do not make the record:\ngot  %+v\nwant %+v", back, full)
	}
	var empty sdk.BootRecord
	if got := empty.Fields(); len(got) != 0 {
		t.Errorf("Fields of an empty record: %v", got)
	}
}

func TestRecordUseDependsOn(t *testing.T) {
	loop := &sdk.RecordUse{Writes: []string{sdk.FieldRoot, sdk.FieldDevices}}
	veth := &sdk.RecordUse{Reads: []string{sdk.FieldNetns}, Writes: []string{sdk.FieldNetns, sdk.FieldInterfaces}}
	cg := &sdk.RecordUse{Reads: []string{sdk.FieldDevices, sdk.FieldUserns}, Writes: []string{sdk.FieldCgroups}}
	users := &sdk.RecordUse{Writes: []string{sdk.FieldUserns, sdk.FieldNetns}}
	for _, tc := range []struct {
		name           string
		later, earlier *sdk.RecordUse
		want           bool
	}{
		{"veth beside loop", veth, loop, false},
		{"cgroup after loop (devices)", cg, loop, true},
		{"cgroup beside veth", cg, veth, false},
		{"veth after userns (netns)", veth, users, true},
		{"loop beside userns", loop, users, false},
		{"undeclared after anything", nil, loop, true},
		{"anything after undeclared", loop, nil, true},
	} {
		if got := tc.later.DependsOn(tc.earlier); got != tc.want {
			t.Errorf("%s: DependsOn = %v, want %v", tc.name, got, tc.want)
		}
	}
	var none *sdk.RecordUse
	if !none.MayRead(sdk.FieldRoot) || !none.MayWrite(sdk.FieldExtra) {
		t.Error("an undeclared use must read and write everything")
	}
	if got := loop.Undeclared(sdk.BootRecord{Root: "/r", Netns: "/n"}); !slices.Equal(got, []string{sdk.FieldNetns}) {
		t.Errorf("Undeclared = %v, want netns", got)
	}
}

func TestRecordUseCheck(t *testing.T) {
	var none *sdk.RecordUse
	if err := none.Check(); err != nil {
		t.Errorf("nil: %v", err)
	}
	if err := (&sdk.RecordUse{Reads: []string{sdk.FieldRoot}, Writes: []string{sdk.FieldGuest}}).Check(); err != nil {
		t.Errorf("good: %v", err)
	}
	err := (&sdk.RecordUse{Writes: []string{"pid"}}).Check()
	if err == nil || !strings.Contains(err.Error(), `"pid", which is not a boot-record field`) {
		t.Errorf("unknown field: %v", err)
	}
}

// The declaration comes with every validation, through RPC as in
// process, so that a boot needs no Describe; a failing validation still
// fails.
func TestValidateUseCarriesTheDeclaration(t *testing.T) {
	use := &sdk.RecordUse{Reads: []string{sdk.FieldDevices}, Writes: []string{sdk.FieldCgroups}}
	impl := &echoStage{desc: &sdk.Description{Name: "cg", Record: use}}
	for name, s := range map[string]sdk.Stage{"rpc": stagetest.Serve(t, impl), "in process": impl} {
		got, err := sdk.ValidateUse(context.Background(), s, fullRequest())
		if err != nil || !reflect.DeepEqual(got, use) {
			t.Errorf("%s: ValidateUse = %+v, %v; want %+v", name, got, err, use)
		}
	}
	plain := &echoStage{}
	if got, err := sdk.ValidateUse(context.Background(), stagetest.Serve(t, plain), fullRequest()); err != nil || got != nil {
		t.Errorf("a stage that declares nothing: %+v, %v; want nil", got, err)
	}
	impl.fail = sdk.Invalidf("bad DISKS")
	if _, err := sdk.ValidateUse(context.Background(), stagetest.Serve(t, impl), fullRequest()); sdk.KindOf(err) != sdk.KindInvalidConfig {
		t.Errorf("a failing validation: %v, want it invalid", err)
	}
}
