package pipeline

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/subhost/subhost/sdk"
	"github.com/subhost/subhost/sdk/stagetest"
)

func noEnv(string) (string, bool) { return "", false }

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// writeFile writes a root-owned 0644 file (the tests run as root).
func writeFile(t *testing.T, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func tempDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBuiltins(t *testing.T) {
	s, err := Load(LoadOptions{Dirs: []string{}, Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Names(); !reflect.DeepEqual(got, []string{"control", "pretend-boot"}) {
		t.Fatalf("Names = %q", got)
	}
	stage := func(name string, params map[string]string) Stage {
		if params == nil {
			params = map[string]string{}
		}
		return Stage{Name: name, Plugin: name, Timeout: 60 * time.Second, Params: params}
	}
	// The user namespace's stage runs only for an unprivileged subhost.
	userns := stage("userns", nil)
	userns.When = "PRIVATE_USERS"
	for _, want := range []Pipeline{
		{Name: "pretend-boot", Home: "/opt/sub", OnExit: "down", Source: "builtin", Stages: []Stage{
			userns, stage("mount-loop", nil), stage("net-veth", nil), stage("cgroup", nil), stage("init", map[string]string{"mode": "sysv"}),
		}},
		{Name: "control", Home: "/opt/subhost", OnExit: "keep", Source: "builtin", Stages: []Stage{
			userns, stage("mount-overlay", nil), stage("net-veth", nil), stage("cgroup", nil), stage("init", map[string]string{"mode": "shell"}),
		}},
	} {
		p, err := s.Get(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if p.Description == "" {
			t.Errorf("%s has no description", p.Name)
		}
		got := *p
		got.Description, got.where = "", ""
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", want.Name, got, want)
		}
	}
}

func TestEnvFunction(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		home string
	}{
		{nil, "/opt/subhost"},
		{map[string]string{"SUBHOST": ""}, "/opt/subhost"},
		{map[string]string{"SUBHOST": "/srv/subhosts/"}, "/srv/subhosts"},
	} {
		s, err := Load(LoadOptions{Dirs: []string{}, Getenv: envOf(tt.env)})
		if err != nil {
			t.Fatal(err)
		}
		p, _ := s.Get("control")
		if p.Home != tt.home {
			t.Errorf("env %v: control home %q, want %q", tt.env, p.Home, tt.home)
		}
	}
	_, err := Load(LoadOptions{Dirs: []string{}, Getenv: envOf(map[string]string{"SUBHOST": "relative"})})
	if err == nil || !strings.Contains(err.Error(), `home must be an absolute path, not "relative" (from the environment)`) {
		t.Errorf("relative $SUBHOST: %v", err)
	}
}

func TestGetUnknown(t *testing.T) {
	s, err := Load(LoadOptions{Dirs: []string{}, Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Get("x")
	if err == nil || err.Error() != `unknown pipeline "x" (known: control, pretend-boot)` || !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Fatalf("got %v", err)
	}
}

func TestOverrideAndAdd(t *testing.T) {
	stagetest.RequireRoot(t)
	dir := tempDir(t)
	over := writeFile(t, dir, "10-override.hcl", `
pipeline "pretend-boot" {
  home = "/srv/sub"
  stage "mount-loop" {
    timeout = "2m"
  }
}
`)
	writeFile(t, dir, "README", "not a pipeline file { at all")
	extra := writeFile(t, tempDir(t), "extra.hcl", `
pipeline "site" {
  description = "a site pipeline"
  home        = env("SITE_HOME", "/srv/site")
  on_exit     = "keep"
  stage "mount-loop" {
    plugin  = "/usr/local/lib/subhost/mount-loop"
    sha256  = "ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789"
    count   = 3
    ratio   = 1.5
    big     = 12345678901234567890
    neg     = -2
    ro      = true
    off     = false
    label   = "disk ${env("LABEL", "x")}"
    empty   = ""
  }
  stage "motd" {
    plugin = "site-motd.v2"
  }
}
`)
	s, err := Load(LoadOptions{Dirs: []string{dir, filepath.Join(dir, "missing")}, Files: []string{extra}, Getenv: envOf(map[string]string{"LABEL": "one"})})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Names(); !reflect.DeepEqual(got, []string{"control", "pretend-boot", "site"}) {
		t.Fatalf("Names = %q", got)
	}
	pb, _ := s.Get("pretend-boot")
	want := Pipeline{Name: "pretend-boot", Home: "/srv/sub", OnExit: "down", Source: over, Stages: []Stage{
		{Name: "mount-loop", Plugin: "mount-loop", Timeout: 2 * time.Minute, Params: map[string]string{}},
	}}
	got := *pb
	got.where = ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("override:\n got %+v\nwant %+v", got, want)
	}
	site, _ := s.Get("site")
	if site.Home != "/srv/site" || site.OnExit != "keep" || site.Source != extra || site.Description != "a site pipeline" {
		t.Errorf("site = %+v", site)
	}
	ml := site.Stages[0]
	if ml.Plugin != "/usr/local/lib/subhost/mount-loop" || ml.SHA256 != "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789" || ml.Timeout != DefaultTimeout {
		t.Errorf("stage = %+v", ml)
	}
	wantParams := map[string]string{"count": "3", "ratio": "1.5", "big": "12345678901234567890", "neg": "-2", "ro": "true", "off": "false", "label": "disk one", "empty": ""}
	if !reflect.DeepEqual(ml.Params, wantParams) {
		t.Errorf("params = %q, want %q", ml.Params, wantParams)
	}
	if site.Stages[1].Plugin != "site-motd.v2" {
		t.Errorf("motd plugin = %q", site.Stages[1].Plugin)
	}
}

const okPipeline = `pipeline "p" {
  home = "/srv"
  stage "a" {}
}
`

func TestLoadRefuses(t *testing.T) {
	stagetest.RequireRoot(t)
	tests := []struct {
		name string
		src  string
		at   string // LINE,COL in FILE
		want string
	}{
		{"syntax", "pipeline \"p\" {\n  home = \"/srv\"\n", "1,14", "Unclosed configuration block"},
		{"syntax-attr", "pipeline \"p\" {\n  home = \n}", "2,10", "Invalid expression"},
		{"on-exit", "pipeline \"p\" {\n  home = \"/srv\"\n  on_exit = \"stop\"\n  stage \"a\" {}\n}", "3,13", `invalid on_exit: on_exit must be "down" or "keep", not "stop"`},
		{"relative-home", "pipeline \"p\" {\n  home = \"srv\"\n  stage \"a\" {}\n}", "2,10", `invalid home: home must be an absolute path, not "srv"`},
		{"missing-home", "pipeline \"p\" {\n  stage \"a\" {}\n}", "1,14", `Missing required argument: The argument "home" is required`},
		{"home-number", "pipeline \"p\" {\n  home = 5\n  stage \"a\" {}\n}", "2,10", "home must be a string, not a number"},
		{"timeout-word", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" { timeout = \"ten\" }\n}", "3,25", `invalid timeout: timeout must be a positive duration like "30s" or "2m", not "ten"`},
		{"timeout-negative", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" { timeout = \"-1s\" }\n}", "3,25", "invalid timeout"},
		{"timeout-zero", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" { timeout = \"0s\" }\n}", "3,25", "invalid timeout"},
		{"timeout-number", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" { timeout = 30 }\n}", "3,25", "timeout must be a string, not a number"},
		{"sha256-short", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" { sha256 = \"abc\" }\n}", "3,24", `invalid sha256: sha256 must be 64 hexadecimal digits, not "abc"`},
		{"when-not-a-variable", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" { when = \"1X\" }\n}", "3,22", `invalid when: when must name a config variable (letters, digits and '_', not starting with a digit), not "1X"`},
		{"sha256-nonhex", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" { sha256 = \"" + strings.Repeat("g", 64) + "\" }\n}", "3,24", "invalid sha256"},
		{"duplicate-stage", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" {}\n  stage \"a\" {}\n}", "4,9", `duplicate stage: stage "a" is already defined at line 3`},
		{"list-param", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" {\n    disks = [\"a\", \"b\"]\n  }\n}", "4,13", "invalid parameter: stage parameter disks must be a string, number or bool, not a list"},
		{"map-param", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" {\n    m = { k = 1 }\n  }\n}", "4,9", "stage parameter m must be a string, number or bool, not a map"},
		{"null-param", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" {\n    n = null\n  }\n}", "4,9", "stage parameter n must be a string, number or bool, not null"},
		{"unknown-attr", "pipeline \"p\" {\n  home = \"/srv\"\n  homes = \"/x\"\n  stage \"a\" {}\n}", "3,3", `Unsupported argument: An argument named "homes" is not expected here`},
		{"unknown-block", "pipeline \"p\" {\n  home = \"/srv\"\n  step \"a\" {}\n}", "3,3", `Unsupported block type: Blocks of type "step" are not expected here`},
		{"top-level-attr", "home = \"/srv\"\n" + okPipeline, "1,1", `Unsupported argument`},
		{"block-in-stage", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" {\n    sub {}\n  }\n}", "4,5", `Unexpected "sub" block: Blocks are not allowed here`},
		{"no-stages", "pipeline \"p\" {\n  home = \"/srv\"\n}", "1,1", `no stages: pipeline "p" has no stage blocks`},
		{"bad-pipeline-name", "pipeline \"../x\" {\n  home = \"/srv\"\n  stage \"a\" {}\n}", "1,10", `invalid pipeline name: pipeline name "../x": only letters, digits`},
		{"pipeline-name-dash", "pipeline \"-x\" {\n  home = \"/srv\"\n  stage \"a\" {}\n}", "1,10", "must start with a letter or digit"},
		{"bad-stage-name", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"A B\" {}\n}", "3,9", `invalid stage name: stage name "A B" must be`},
		{"bad-plugin", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" { plugin = \"../x\" }\n}", "3,24", `invalid plugin: plugin must be a plain name`},
		{"plugin-subdir", "pipeline \"p\" {\n  home = \"/srv\"\n  stage \"a\" { plugin = \"x/y\" }\n}", "3,24", `invalid plugin`},
		{"unknown-function", "pipeline \"p\" {\n  home = file(\"/etc/x\")\n  stage \"a\" {}\n}", "2,10", `Call to unknown function: There is no function named "file"`},
		{"env-arity", "pipeline \"p\" {\n  home = env(\"X\")\n  stage \"a\" {}\n}", "2,17", `Not enough function arguments`},
		{"variable", "pipeline \"p\" {\n  home = var.x\n  stage \"a\" {}\n}", "2,10", `Variables not allowed`},
		{"duplicate-in-file", okPipeline + okPipeline, "5,10", `duplicate pipeline: pipeline "p" is defined in both FILE:1 and FILE:5`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tempDir(t), tt.name+".hcl", tt.src)
			_, err := Load(LoadOptions{Dirs: []string{}, Files: []string{path}, Getenv: noEnv})
			checkErr(t, err, path+":"+tt.at+": ", strings.ReplaceAll(tt.want, "FILE", path))
		})
	}
}

func checkErr(t *testing.T, err error, prefix, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s...%s", prefix, want)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, want) {
		t.Errorf("error %q\nwant  %s...%s", msg, prefix, want)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	if !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Errorf("kind %v, want invalid config", sdk.KindOf(err))
	}
}

func TestDuplicateAcrossFiles(t *testing.T) {
	stagetest.RequireRoot(t)
	dir := tempDir(t)
	a := writeFile(t, dir, "a.hcl", okPipeline)
	b := writeFile(t, dir, "b.hcl", "\n"+okPipeline)
	_, err := Load(LoadOptions{Dirs: []string{dir}, Getenv: noEnv})
	checkErr(t, err, "", `pipeline "p" is defined in both `+a+":1 and "+b+":2")

	// A --pipeline-file repeating a directory's pipeline is also an error.
	c := writeFile(t, tempDir(t), "c.hcl", okPipeline)
	_, err = Load(LoadOptions{Dirs: []string{filepath.Join(dir, "none")}, Files: []string{a, c}, Getenv: noEnv})
	checkErr(t, err, "", `pipeline "p" is defined in both `+a+":1 and "+c+":1")
}

func TestInsecure(t *testing.T) {
	stagetest.RequireRoot(t)
	tests := []struct {
		name  string
		setup func(t *testing.T) LoadOptions
		want  string
	}{
		{"file-world-writable", func(t *testing.T) LoadOptions {
			p := writeFile(t, tempDir(t), "p.hcl", okPipeline)
			os.Chmod(p, 0o666)
			return LoadOptions{Dirs: []string{}, Files: []string{p}}
		}, "pipeline file FILE is writable by group or others (mode 0666): chmod go-w it"},
		{"file-in-dir-group-writable", func(t *testing.T) LoadOptions {
			dir := tempDir(t)
			p := writeFile(t, dir, "p.hcl", okPipeline)
			os.Chmod(p, 0o664)
			return LoadOptions{Dirs: []string{dir}}
		}, "pipeline file FILE is writable by group or others (mode 0664)"},
		{"file-not-root", func(t *testing.T) LoadOptions {
			dir := tempDir(t)
			p := writeFile(t, dir, "p.hcl", okPipeline)
			os.Chown(p, 65534, 65534)
			return LoadOptions{Dirs: []string{dir}}
		}, "pipeline file FILE is owned by uid 65534, not root: chown root it"},
		{"dir-world-writable", func(t *testing.T) LoadOptions {
			dir := tempDir(t)
			writeFile(t, dir, "p.hcl", okPipeline)
			os.Chmod(dir, 0o777)
			return LoadOptions{Dirs: []string{dir}}
		}, "pipeline directory DIR is writable by group or others (mode 0777)"},
		{"dir-not-root", func(t *testing.T) LoadOptions {
			dir := tempDir(t)
			os.Chown(dir, 65534, 65534)
			return LoadOptions{Dirs: []string{dir}}
		}, "pipeline directory DIR is owned by uid 65534, not root"},
		{"missing-file", func(t *testing.T) LoadOptions {
			return LoadOptions{Dirs: []string{}, Files: []string{filepath.Join(tempDir(t), "nope.hcl")}}
		}, "pipeline file FILE does not exist"},
		{"file-is-dir", func(t *testing.T) LoadOptions {
			dir := tempDir(t)
			os.Mkdir(filepath.Join(dir, "d.hcl"), 0o755)
			return LoadOptions{Dirs: []string{dir}}
		}, "pipeline file FILE is not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.setup(t)
			opts.Getenv = noEnv
			_, err := Load(opts)
			want := tt.want
			if len(opts.Files) > 0 {
				want = strings.ReplaceAll(want, "FILE", opts.Files[0])
			}
			if len(opts.Dirs) > 0 {
				want = strings.ReplaceAll(want, "DIR", opts.Dirs[0])
				if matches, _ := filepath.Glob(filepath.Join(opts.Dirs[0], "*.hcl")); len(matches) > 0 {
					want = strings.ReplaceAll(want, "FILE", matches[0])
				}
			}
			checkErr(t, err, "", want)
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(builtinHCL)
	f.Add([]byte(okPipeline))
	f.Add([]byte("pipeline \"p\" {\n  home = env(\"H\", \"/x\")\n  stage \"a\" { n = 1.5\n t = \"1s\" }\n}"))
	f.Fuzz(func(t *testing.T, src []byte) {
		ps, err := parse(src, "f.hcl", "f.hcl", noEnv)
		if err != nil {
			if !sdk.IsKind(err, sdk.KindInvalidConfig) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q of kind %v", err, sdk.KindOf(err))
			}
			return
		}
		for _, p := range ps {
			if len(p.Stages) == 0 || !filepath.IsAbs(p.Home) || p.OnExit != OnExitDown && p.OnExit != OnExitKeep {
				t.Fatalf("accepted bad pipeline %+v", p)
			}
			for _, st := range p.Stages {
				if st.Timeout <= 0 || st.Plugin == "" {
					t.Fatalf("accepted bad stage %+v", st)
				}
			}
		}
	})
}

// A site pipeline that launches its guest with the shipped init but has
// no cgroup stage gets one, just before init: its guest keeps the device
// policy after an upgrade. One that has it, or launches otherwise, is
// left as written.
func TestCgroupStageImpliedBeforeInit(t *testing.T) {
	src := `
pipeline "old" {
  home = "/opt/sub"
  stage "mount-loop" {}
  stage "hook" {
    plugin = "exec"
  }
  stage "boot" {
    plugin = "init"
  }
}
pipeline "has" {
  home = "/opt/sub"
  stage "limits" {
    plugin = "cgroup"
  }
  stage "init" {}
}
pipeline "own" {
  home = "/opt/sub"
  stage "mount-loop" {}
  stage "launch" {
    plugin = "/usr/local/lib/site-launcher"
  }
}
`
	ps, err := parse([]byte(src), "site.hcl", "site.hcl", envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"old": {"mount-loop", "hook", "cgroup", "boot"},
		"has": {"limits", "init"},
		"own": {"mount-loop", "launch"},
	}
	for _, p := range ps {
		var got []string
		for _, s := range p.Stages {
			got = append(got, s.Name)
		}
		if !slices.Equal(got, want[p.Name]) {
			t.Errorf("pipeline %s: stages %v, want %v", p.Name, got, want[p.Name])
		}
		if implied := len(p.Implied) > 0; implied != (p.Name == "old") {
			t.Errorf("pipeline %s: implied %v", p.Name, p.Implied)
		}
	}
}

// TestStageSkipped: a stage with when= runs only when the config sets its
// variable to something other than "no".
func TestStageSkipped(t *testing.T) {
	st := Stage{Name: "userns", When: "PRIVATE_USERS"}
	for _, tt := range []struct {
		config string
		skip   bool
	}{
		{"", true},
		{"PRIVATE_USERS=no", true},
		{"PRIVATE_USERS=", true},
		{"PRIVATE_USERS=pick", false},
		{"PRIVATE_USERS=65536:65536", false},
	} {
		sub := sdk.Subhost{Name: "x", Vars: map[string]sdk.Var{}}
		if k, v, ok := strings.Cut(tt.config, "="); ok {
			sub.Vars[k] = sdk.Var{Words: []string{v}}
		}
		if got := st.Skipped(sub); got != tt.skip {
			t.Errorf("config %q: Skipped = %v, want %v", tt.config, got, tt.skip)
		}
	}
	if (Stage{Name: "a"}).Skipped(sdk.Subhost{}) {
		t.Error("a stage without when= is skipped")
	}
}

// Hidden files are not read, as the shell's *.hcl would not: an editor's
// lock file (.#site.hcl, a dangling symlink while root edits site.hcl)
// must not make every command fail.
func TestLoadSkipsHiddenFiles(t *testing.T) {
	dir := tempDir(t)
	if err := os.Symlink("root@host.1234:1700000000", filepath.Join(dir, ".#site.hcl")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, ".old.hcl", "this is not HCL {")
	set, err := Load(LoadOptions{Dirs: []string{dir}, Getenv: noEnv})
	if err != nil {
		t.Fatalf("Load with hidden files beside: %v", err)
	}
	if _, err := set.Get("pretend-boot"); err != nil {
		t.Error(err)
	}
}
