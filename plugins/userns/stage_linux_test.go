package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/subhost/subhost/internal/idrange"
	"github.com/subhost/subhost/internal/userns"
	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// scratchStage is the stage with its registry and pins in a test's own
// directory (the network namespace is the host's /run/netns/NAME).
func scratchStage(t *testing.T) *stage {
	dir := t.TempDir()
	return &stage{registry: idrange.Registry{Dir: dir, SubIDFiles: []string{}}, pinDir: filepath.Join(dir, "pins")}
}

func request(name, privateUsers string) *sdk.Request {
	return &sdk.Request{Subhost: sdk.Subhost{Name: name, Home: "/opt/sub/" + name,
		Vars: map[string]sdk.Var{varName: {Words: []string{privateUsers}, Origin: "/opt/sub/" + name + "/config:3"}}}}
}

func TestConformancePick(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.Conformance(t, scratchStage(t), request(fmt.Sprintf("usrc%d", os.Getpid()), "pick"))
}

func TestPinnedNamespacesMapTheRange(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := scratchStage(t)
	ctx := context.Background()
	req := request(fmt.Sprintf("usrm%d", os.Getpid()), "pick")
	res, err := s.Up(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	req.State = res.State
	t.Cleanup(func() {
		if err := s.Down(ctx, req); err != nil {
			t.Error(err)
		}
	})
	rec := res.Record
	if rec.UsernsSize != idrange.Block || rec.UsernsBase == 0 || rec.Netns != "/run/netns/"+req.Subhost.Name {
		t.Fatalf("record %+v", rec)
	}
	if err := userns.Check(rec.Userns, rec.Netns); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nsenter", "--user="+rec.Userns, "--net="+rec.Netns, "--", "cat", "/proc/self/uid_map", "/proc/self/gid_map").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v: %s", err, out)
	}
	want := fmt.Sprintf("0 %d %d", rec.UsernsBase, rec.UsernsSize)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Join(strings.Fields(line), " ") != want {
			t.Errorf("map line %q, want %q", line, want)
		}
	}
	// Up again adopts the same namespaces and range.
	again, err := s.Up(ctx, req)
	if err != nil || !reflect.DeepEqual(again.Record, rec) {
		t.Errorf("Up again: %+v, %v; want %+v", again, err, rec)
	}
}

// A subhost whose namespaces are kept (hibernating) and whose config now
// asks for another explicit range is refused, in Validate and Up, with
// its range kept in the registry; the range it has is still accepted,
// and pick adopts it.
func TestKeptNamespacesKeepTheirRange(t *testing.T) {
	stagetest.RequireRoot(t)
	stagetest.NoLeaks(t)
	s := scratchStage(t)
	ctx := context.Background()
	name := fmt.Sprintf("usrk%d", os.Getpid())
	req := request(name, "pick")
	res, err := s.Up(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	req.State = res.State
	t.Cleanup(func() {
		if err := s.Down(ctx, req); err != nil {
			t.Error(err)
		}
	})
	base := res.Record.UsernsBase
	other := request(name, fmt.Sprint(base+idrange.Block))
	other.State = res.State
	if err := s.Validate(ctx, other); !sdk.IsKind(err, sdk.KindConflict) || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("Validate with another range: %v, want a conflict", err)
	}
	if _, err := s.Up(ctx, other); !sdk.IsKind(err, sdk.KindConflict) {
		t.Errorf("Up with another range: %v, want a conflict", err)
	}
	if got, ok, _ := s.reg().Lookup(owner(req)); !ok || got.Base != base {
		t.Errorf("registry holds %+v for it, want base %d", got, base)
	}
	same := request(name, fmt.Sprint(base))
	same.State = res.State
	if _, err := s.Up(ctx, same); err != nil {
		t.Errorf("Up with the range it has: %v", err)
	}
}

func TestBadPrivateUsers(t *testing.T) {
	s := scratchStage(t)
	ctx := context.Background()
	for _, bad := range []string{"yes", "0", "12:0", "pick:1"} {
		err := s.Validate(ctx, request("web1", bad))
		if !sdk.IsKind(err, sdk.KindInvalidConfig) || !strings.Contains(err.Error(), "config:3") {
			t.Errorf("PRIVATE_USERS=%s: got %v, want an invalid config naming the line", bad, err)
		}
	}
	for _, good := range []string{"", "no", "pick", "1000000", "1000000:100"} {
		if err := s.Validate(ctx, request("web1", good)); err != nil {
			t.Errorf("PRIVATE_USERS=%q: %v", good, err)
		}
	}
}

func TestExplicitOverlapIsRefused(t *testing.T) {
	s := scratchStage(t)
	if _, err := s.reg().Acquire(idrange.Owner{Name: "a", Home: "/opt/sub/a"}, idrange.Spec{Enabled: true, Range: idrange.Range{Base: 1 << 20, Size: idrange.Block}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := request("b", fmt.Sprintf("%d", 1<<20+100))
	if err := s.Validate(ctx, req); !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Errorf("Validate: got %v, want invalid config", err)
	}
	if _, err := s.Up(ctx, req); !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Errorf("Up: got %v, want invalid config", err)
	}
	if _, held, _ := s.reg().Lookup(idrange.Owner{Name: "b", Home: "/opt/sub/b"}); held {
		t.Error("a refused range was registered")
	}
}

// TestPinPath: a pin goes under the runner's state root; one an older
// build left elsewhere is found where it is.
func TestPinPath(t *testing.T) {
	state, old := t.TempDir(), t.TempDir()
	dirs := []string{state, old}
	if got := pinPath(dirs, "a.1"); got != filepath.Join(state, "a.1") {
		t.Errorf("new pin at %s, want under the state root", got)
	}
	if err := os.WriteFile(filepath.Join(old, "a.1"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if got := pinPath(dirs, "a.1"); got != filepath.Join(old, "a.1") {
		t.Errorf("an old pin is not found: %s", got)
	}
	if err := os.WriteFile(filepath.Join(state, "a.1"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if got := pinPath(dirs, "a.1"); got != filepath.Join(state, "a.1") {
		t.Errorf("with both, %s, want the state root's", got)
	}
}
