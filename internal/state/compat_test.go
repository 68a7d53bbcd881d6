package state

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// schema1Fixture is a state.json as subhost wrote it for a running
// pretend-boot subhost (schema 1), committed so that a later binary is
// held to reading it: a package upgrade replaces the binary under running
// guests, and the new one must see and stop what the old one started.
const schema1Fixture = "testdata/schema1-running.json"

// Every field of the fixture is one this binary knows (none is dropped
// when it saves the state again), and the fields stop needs are read.
func TestSchema1FixtureLoads(t *testing.T) {
	data, err := os.ReadFile(schema1Fixture)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var strict State
	if err := dec.Decode(&strict); err != nil {
		t.Fatalf("a schema 1 state.json has a field this binary does not know: %v", err)
	}

	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "fixsub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fixsub", "state.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	d := Dir{Root: dir, Name: "fixsub"}
	st, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Schema != 1 || st.Status != Running || st.Pipeline != "pretend-boot" || st.Record.GuestPID == 0 ||
		st.Record.GuestStartTime == 0 || st.Supervisor == 0 || len(st.Stages) != 3 || st.GuestStarted.IsZero() {
		t.Errorf("schema 1 state read as %+v", st)
	}
	for _, s := range st.Stages {
		if s.Status != StageUp || !s.Owed() || s.Path == "" || len(s.State) == 0 {
			t.Errorf("stage %s read as %+v: Down could not run from it", s.Name, s)
		}
	}

	// Saved again by this binary, it still holds everything it held.
	if err := d.Save(st); err != nil {
		t.Fatal(err)
	}
	again, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	again.Updated = st.Updated
	if !reflect.DeepEqual(st, again) {
		t.Errorf("a save and load changed the state:\n%+v\n%+v", st, again)
	}
}
