package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

// echoStage returns what it got, so a test can compare both sides of the
// RPC boundary, and fails with whatever error it is told to.
type echoStage struct {
	got  *sdk.Request
	fail error
	desc *sdk.Description
}

func (e *echoStage) Describe() sdk.Description {
	if e.desc != nil {
		return *e.desc
	}
	return sdk.Description{Name: "echo", Version: "1.2.3", Summary: "echoes", Params: []sdk.Param{{Name: "p", Doc: "a param", Default: "d", Required: true}},
		Vars: []sdk.ConfigVar{{Name: "LIVE_ONE", Doc: "changes live", Live: true}, {Name: "BOOT_ONE", Default: "x"}}}
}
func (e *echoStage) Validate(_ context.Context, r *sdk.Request) error { e.got = r; return e.fail }
func (e *echoStage) Up(_ context.Context, r *sdk.Request) (*sdk.Result, error) {
	e.got = r
	return &sdk.Result{Record: r.Record, State: r.State}, e.fail
}
func (e *echoStage) Down(_ context.Context, r *sdk.Request) error  { e.got = r; return e.fail }
func (e *echoStage) Check(_ context.Context, r *sdk.Request) error { e.got = r; return e.fail }

func fullRequest() *sdk.Request {
	return &sdk.Request{
		Subhost: sdk.Subhost{
			Name: "web1", Home: "/opt/sub/web1", ConfigFile: "/opt/sub/web1/config",
			Vars: map[string]sdk.Var{
				"DISKS":   {Words: []string{"vda:1:/d/a.raw", "vdb:0:/d/b.raw"}, IsArray: true, Origin: "/opt/sub/web1/config:2"},
				"BRIDGES": {Words: []string{"br0:06:a7:dd:b4:02:f2"}, IsArray: true, Origin: "environment"},
				"BASE":    {Words: []string{"/base"}, Origin: "/opt/sub/web1/config:1"},
			},
		},
		Stage:  "echo",
		Params: map[string]string{"mode": "sysv", "timeout": "10s"},
		Record: sdk.BootRecord{
			Root:           "/opt/sub/web1/live",
			Devices:        []sdk.Device{{GuestName: "vda", HostPath: "/dev/loop3", Major: 7, Minor: 3, ReadOnly: true}},
			Netns:          "/run/netns/web1",
			Interfaces:     []sdk.Interface{{HostName: "web10", GuestName: "eth0", MAC: "06:a7:dd:b4:02:f2", Bridge: "br0"}},
			Hostname:       "web1",
			GuestPID:       4242,
			GuestStartTime: 987654321,
			Extra:          map[string]string{"site": "x"},
			Cgroups: []sdk.Cgroup{{Hierarchy: "memory", Dir: "/sys/fs/cgroup/memory/subhost/web1", Guest: "/sys/fs/cgroup/memory/subhost/web1/guest"},
				{Hierarchy: "cgroup2", Dir: "/sys/fs/cgroup/unified/subhost/web1", Guest: "/sys/fs/cgroup/unified/subhost/web1/guest"}},
			DevicePolicy: []string{"cgroup1-devices", "cgroup2-bpf"},
		},
		State:   []byte(`{"opaque":true}`),
		Console: "/dev/pts/9",
		Changes: map[string]string{"MEMORY_MAX": "2G"},
	}
}

// fill sets every field reachable from v (a pointer) to a value of its
// own, told apart by its path, so that a round trip that drops or mixes
// up any field, including one added later, shows.
func fill(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), path)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			fill(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.String:
		v.SetString("s" + path)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(len(path)) + 1)
	case reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint8:
		v.SetUint(uint64(len(path)) + 7)
	case reflect.Slice:
		n := 2
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := 0; i < n; i++ {
			fill(t, v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		fill(t, k, path+"{key}")
		e := reflect.New(v.Type().Elem()).Elem()
		fill(t, e, path+"{elem}")
		m.SetMapIndex(k, e)
		v.Set(m)
	default:
		t.Fatalf("fill: %s has kind %s; teach fill about it", path, v.Kind())
	}
}

func TestRoundTripOfEveryFieldByReflection(t *testing.T) {
	impl := &echoStage{}
	s := stagetest.Serve(t, impl)
	ctx := context.Background()
	var want sdk.Request
	fill(t, reflect.ValueOf(&want).Elem(), "Request")
	for name, call := range map[string]func() error{
		"validate": func() error { return s.Validate(ctx, &want) },
		"down":     func() error { return s.Down(ctx, &want) },
		"check":    func() error { return s.Check(ctx, &want) },
	} {
		if err := call(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(impl.got, &want) {
			t.Errorf("%s: a field was lost or changed crossing the RPC:\ngot  %+v\nwant %+v", name, impl.got, &want)
		}
	}
	res, err := s.Up(ctx, &want)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Record, want.Record) || string(res.State) != string(want.State) {
		t.Errorf("Up result: got %+v, want %+v", res, want.Record)
	}
	var d sdk.Description
	fill(t, reflect.ValueOf(&d).Elem(), "Description")
	impl.desc = &d
	if got := s.Describe(); !reflect.DeepEqual(got, d) {
		t.Errorf("Describe: got %+v, want %+v", got, d)
	}
}

// updateStage is echoStage with the optional Update.
type updateStage struct{ echoStage }

func (u *updateStage) Update(_ context.Context, r *sdk.Request) ([]string, error) {
	u.got = r
	return []string{"MEMORY_MAX"}, u.fail
}

// TestUpdateOptional: Update reaches a stage that implements it with
// every field, and one that does not says ErrUnsupported, not a
// transport error.
func TestUpdateOptional(t *testing.T) {
	ctx := context.Background()
	want := fullRequest()
	impl := &updateStage{}
	applied, err := sdk.Update(ctx, stagetest.Serve(t, impl), want)
	if err != nil || !reflect.DeepEqual(applied, []string{"MEMORY_MAX"}) {
		t.Fatalf("Update: %v %v", applied, err)
	}
	if !reflect.DeepEqual(impl.got, want) {
		t.Errorf("Update: the stage got\n%+v\nwant\n%+v", impl.got, want)
	}
	impl.fail = sdk.Invalidf("MEMORY_MAX: bad")
	if _, err := sdk.Update(ctx, stagetest.Serve(t, impl), want); sdk.KindOf(err) != sdk.KindInvalidConfig {
		t.Errorf("Update failing: %v, want an invalid-config error", err)
	}
	if _, err := sdk.Update(ctx, stagetest.Serve(t, &echoStage{}), want); !errors.Is(err, sdk.ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Update of a stage without it: %v, want ErrUnsupported", err)
	}
}

func TestErrorKindsCrossRPC(t *testing.T) {
	impl := &echoStage{}
	s := stagetest.Serve(t, impl)
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		kind sdk.ErrorKind
	}{
		{sdk.Invalidf("DISKS[0] %q: bad", "x"), sdk.KindInvalidConfig},
		{sdk.Conflictf("%q exists but is not a bridge", "br0"), sdk.KindConflict},
		{sdk.NotFoundf("no such thing"), sdk.KindNotFound},
		{sdk.Internalf("boom"), sdk.KindInternal},
		{errors.New("untyped"), sdk.KindInternal},
		{errors.Join(sdk.NotFoundf("a gone"), sdk.Conflictf("b busy")), sdk.KindNotFound},
	} {
		impl.fail = tc.err
		for name, call := range map[string]func() error{
			"validate": func() error { return s.Validate(ctx, fullRequest()) },
			"up":       func() error { _, err := s.Up(ctx, fullRequest()); return err },
			"down":     func() error { return s.Down(ctx, fullRequest()) },
			"check":    func() error { return s.Check(ctx, fullRequest()) },
		} {
			err := call()
			if err == nil {
				t.Fatalf("%s: %v was lost", name, tc.err)
			}
			if got := sdk.KindOf(err); got != tc.kind {
				t.Errorf("%s: kind %v, want %v (%v)", name, got, tc.kind, err)
			}
			for _, part := range strings.Split(tc.err.Error(), "\n") {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("%s: message %q lost %q", name, err, part)
				}
			}
		}
	}
	// Each part of a joined error keeps its own kind.
	impl.fail = errors.Join(sdk.NotFoundf("a gone"), sdk.Conflictf("b busy"))
	err := s.Down(ctx, fullRequest())
	var parts interface{ Unwrap() []error }
	if !errors.As(err, &parts) || len(parts.Unwrap()) != 2 || !sdk.IsKind(parts.Unwrap()[1], sdk.KindConflict) {
		t.Errorf("joined error did not survive: %#v", err)
	}
}

// An error message that is not UTF-8 (a script's stderr in Latin-1, a
// name in another encoding) keeps its kind and its text across the RPC,
// with U+FFFD for each run of stray bytes: protobuf strings must be UTF-8, and
// the call failed as a whole with gRPC's marshalling error.
func TestErrorNotUTF8CrossesRPC(t *testing.T) {
	impl := &echoStage{fail: sdk.Invalidf("image /srv/gr\xf6\xdfe.raw: no such file")}
	s := stagetest.Serve(t, impl)
	err := s.Validate(context.Background(), fullRequest())
	if want := "image /srv/gr\ufffde.raw: no such file"; !sdk.IsKind(err, sdk.KindInvalidConfig) || err.Error() != want {
		t.Errorf("Validate: %v (kind %v), want %q, invalid config", err, sdk.KindOf(err), want)
	}
}

func TestErrorWraps(t *testing.T) {
	err := sdk.Invalidf("config %s: %w", "x", os.ErrNotExist)
	if !errors.Is(err, os.ErrNotExist) || sdk.KindOf(err) != sdk.KindInvalidConfig {
		t.Errorf("wrapping lost: %v", err)
	}
	if sdk.KindOf(fmtWrap(err)) != sdk.KindInvalidConfig {
		t.Errorf("kind lost through fmt wrapping")
	}
}

func fmtWrap(err error) error { return errors.Join(err) }

func TestMergeRejectsConflicts(t *testing.T) {
	var r sdk.BootRecord
	if err := r.Merge(sdk.BootRecord{Root: "/a", Devices: []sdk.Device{{GuestName: "vda", Major: 7}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Merge(sdk.BootRecord{Netns: "/run/netns/x", Interfaces: []sdk.Interface{{GuestName: "eth0"}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Merge(sdk.BootRecord{Userns: "/run/u", UsernsBase: 65536, UsernsSize: 65536, RootUserns: "/run/u"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []sdk.BootRecord{
		{Root: "/b"},
		{Userns: "/run/v"},
		{RootUserns: "/run/v"},
		{UsernsBase: 131072, UsernsSize: 65536},
		{Devices: []sdk.Device{{GuestName: "vda", Major: 8}}},
		{Interfaces: []sdk.Interface{{GuestName: "eth0", MAC: "x"}}},
	} {
		before := r
		if err := r.Merge(bad); !sdk.IsKind(err, sdk.KindConflict) {
			t.Errorf("merge %+v: got %v, want a conflict", bad, err)
		}
		if !reflect.DeepEqual(before, r) {
			t.Errorf("a failed merge changed the record")
		}
	}
	if err := r.Merge(sdk.BootRecord{Root: "/a"}); err != nil {
		t.Errorf("the same value again is no conflict: %v", err)
	}
}

// The Go protocol constant follows the .proto package version.
func TestProtocolVersionMatchesProto(t *testing.T) {
	data, err := os.ReadFile("stage.proto")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^package subhost\.stage\.v(\d+);`).FindSubmatch(data)
	if m == nil || string(m[1]) != "1" || sdk.ProtocolVersion != 1 {
		t.Errorf("stage.proto package version %q and sdk.ProtocolVersion %d disagree", m, sdk.ProtocolVersion)
	}
}

// sdk is public: it must not depend on the runner or the plugins.
func TestSDKImportsNothingPrivate(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, private := range []string{"/internal/", "/cmd/", "/plugins/"} {
			rest, ok := strings.CutPrefix(pkg, "github.com/subhost/subhost")
			if ok && strings.Contains(rest+"/", private) && !strings.HasPrefix(rest, "/sdk/") {
				t.Errorf("sdk depends on %s", pkg)
			}
		}
	}
}

func TestGuestRootConfinesAndClassifies(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	os.Symlink(outside, dir+"/escape")
	req := &sdk.Request{Stage: "x", Record: sdk.BootRecord{Root: dir}}
	root, err := req.GuestRoot()
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := root.WriteFile("escape/planted", []byte("x"), 0o644); err == nil {
		t.Errorf("a write through a symlink left the guest root")
	}
	if _, err := os.Stat(outside + "/planted"); err == nil {
		t.Errorf("file planted outside the root")
	}
	if _, err := (&sdk.Request{}).GuestRoot(); !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Errorf("no root in the record: %v", err)
	}
	gone := &sdk.Request{Record: sdk.BootRecord{Root: dir + "/nope"}}
	if _, err := gone.GuestRoot(); !sdk.IsKind(err, sdk.KindNotFound) {
		t.Errorf("a missing root: %v", err)
	}
}
