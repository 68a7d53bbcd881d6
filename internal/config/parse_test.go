package config

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/subhost/subhost/sdk"
)

// badConfigs are configs subhost must refuse. PROBE in src is replaced by a
// path that bash would create if it ran the file: it must not exist after
// parsing. at is the expected LINE:COL.
var badConfigs = []struct {
	name, src, at, want string
}{
	{"cmd-subst", "DISKS=( vda:1:$(touch PROBE) )", "1:15", "command substitution is not allowed"},
	{"cmd-subst-scalar", "IMG=/x/$(touch PROBE)", "1:8", "command substitution is not allowed"},
	{"backquote", "IMG=`touch PROBE`", "1:5", "command substitution is not allowed"},
	{"cmd-subst-dquote", "X=\"a $(touch PROBE)\"", "1:6", "command substitution is not allowed"},
	{"cmd-subst-line3", "A=1\nB=( x\n  $(touch PROBE) )", "3:3", "command substitution is not allowed"},
	{"cmd-subst-in-default", "X=${Y:-$(touch PROBE)}", "1:3", "only plain $NAME or ${NAME} references"},
	{"proc-subst", "X=( <(touch PROBE) )", "1:5", "process substitution is not allowed"},
	{"arith-exp", "X=$(( $(touch PROBE) + 1 ))", "1:3", "arithmetic is not allowed"},
	{"arith-cmd", "(( $(touch PROBE) ))", "1:1", "arithmetic is not allowed"},
	{"let", "let x=$(touch PROBE)", "1:1", "arithmetic (let) is not allowed"},
	{"declare-int", "declare -i X=1+1", "1:9", "declare option -i is not allowed"},
	{"glob-star", "DISKS=( /tmp/*.raw )", "1:14", "glob character '*' is not allowed"},
	{"glob-question", "X=disk?.raw", "1:7", "glob character '?' is not allowed"},
	{"glob-bracket", "X=disk[12].raw", "1:7", "glob character '[' is not allowed"},
	{"glob-after-ref", "A=/x\nB=( $A/* )", "2:8", "glob character '*' is not allowed"},
	{"glob-via-ref", "A='/tmp/*'\nB=( $A )", "2:5", "which bash would glob"},
	{"extglob", "X=( @(a|b) )", "1:5", "extended glob is not allowed"},
	{"brace", "DISKS=( vd{a,b}:1:/x )", "1:11", "brace expansion is not allowed"},
	{"brace-seq", "X=( d{1..3} )", "1:6", "brace expansion is not allowed"},
	{"function", "f() { touch PROBE; }\nf", "1:1", "function definition is not allowed"},
	{"function-keyword", "function f { touch PROBE; }", "1:1", "function definition is not allowed"},
	{"if", "X=1\nif true; then touch PROBE; fi", "2:1", "control flow (if) is not allowed"},
	{"for", "for x in a; do touch PROBE; done", "1:1", "control flow (for) is not allowed"},
	{"while", "while touch PROBE; do break; done", "1:1", "control flow (while) is not allowed"},
	{"until", "until touch PROBE; do :; done", "1:1", "control flow (until) is not allowed"},
	{"case", "case x in x) touch PROBE;; esac", "1:1", "control flow (case) is not allowed"},
	{"and", "true && touch PROBE", "1:6", "control flow (&&) is not allowed"},
	{"or", "false || touch PROBE", "1:7", "control flow (||) is not allowed"},
	{"pipeline", "X=1 | touch PROBE", "1:5", "a pipeline is not allowed"},
	{"subshell", "( touch PROBE )", "1:1", "subshell is not allowed"},
	{"block", "{ touch PROBE; }", "1:1", "block is not allowed"},
	{"test-clause", "[[ $(touch PROBE) ]]", "1:1", "test is not allowed"},
	{"redirect", "X=1 > PROBE", "1:5", "redirection is not allowed"},
	{"heredoc", "X=1 <<EOF\nhi\nEOF", "1:5", "redirection is not allowed"},
	{"background", "X=1 &", "1:5", "background"},
	{"negation", "! touch PROBE", "1:1", "negation"},
	{"command", "touch PROBE", "1:1", `command "touch" is not allowed in a config: only variable assignments are`},
	{"command-after-assign", "X=1 touch PROBE", "1:5", `command "touch" is not allowed`},
	{"command-subst-only", "$(touch PROBE)", "1:1", "command substitution is not allowed"},
	{"source", ". /etc/passwd", "1:1", `command "." is not allowed`},
	{"eval", "eval 'touch PROBE'", "1:1", `command "eval" is not allowed`},
	{"coproc", "coproc touch PROBE", "1:1", "coproc is not allowed"},
	{"time", "time touch PROBE", "1:1", "time is not allowed"},
	{"local", "local X=1", "1:1", `"local" is not allowed`},
	{"export-f", "export -f X", "1:8", "export option -f is not allowed"},
	{"declare-word", "X=x\ndeclare $X", "2:9", "declare takes only NAME or NAME=VALUE arguments"},
	{"tilde", "X=~/disk.raw", "1:3", "tilde expansion is not allowed"},
	{"tilde-user", "X=( ~root/disk )", "1:5", "tilde expansion is not allowed"},
	{"tilde-after-colon", "PATHS=/a:~/b", "1:10", "tilde expansion is not allowed"},
	{"unset-ref", "DISKS=( vda:1:$IMG/d1.raw )\nIMG=/disks", "1:15", "variable IMG is not set earlier in this config"},
	{"unset-ref-braces", "X=\"${NOPE}\"", "1:4", "variable NOPE is not set"},
	{"ref-operator", "A=1\nX=${A%1}", "2:3", "only plain $NAME or ${NAME} references"},
	{"ref-length", "A=1\nX=${#A}", "2:3", "only plain $NAME or ${NAME} references"},
	{"ref-index", "A=(1)\nX=${A[0]}", "2:3", "only plain $NAME or ${NAME} references"},
	{"ref-indirect", "A=1\nX=${!A}", "2:3", "only plain $NAME or ${NAME} references"},
	{"special-param", "X=$1", "1:3", "special parameter $1 is not allowed"},
	{"special-pid", "X=$$", "1:3", "special parameter $$ is not allowed"},
	{"indexed-assign", "X[0]=a", "1:1", "indexed assignment X[...] is not allowed"},
	{"indexed-elem", "X=( [0]=a )", "1:6", "indexed array element"},
	{"ansi-c-quote", "X=$'a\\nb'", "1:3", "$'...' quoting is not allowed"},
	{"ifs", "IFS=:", "1:1", "assigning IFS is not allowed"},
	{"readonly-reassign", "readonly X=1\nX=2", "2:1", "X is readonly (made so at CONFIG:1)"},
	{"unbalanced-open", "DISKS=( vda:1:/x.raw", "1:7", "reached EOF without matching `(` with `)`"},
	{"unbalanced-close", "DISKS=( vda:1:/x.raw ) )", "1:24", "encountered `)`"},
	{"unbalanced-subst", "X=$(touch PROBE", "1:3", "reached EOF without matching `$(`"},
	{"unclosed-quote", "X=\"abc\nY=1", "1:3", "reached EOF without closing quote"},
	{"stray-dsemi", "X=1;;", "1:4", "can only be used in a case clause"},
}

func TestParseRefuses(t *testing.T) {
	for _, tt := range badConfigs {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			probe := filepath.Join(dir, "probe")
			path := filepath.Join(dir, "config")
			src := strings.ReplaceAll(tt.src, "PROBE", probe)
			f, err := Parse(path, []byte(src))
			if err == nil {
				t.Fatalf("accepted %q: %v", src, f.Vars)
			}
			want := strings.ReplaceAll(tt.want, "CONFIG", path)
			msg := err.Error()
			if !strings.HasPrefix(msg, path+":"+tt.at+": ") || !strings.Contains(msg, want) {
				t.Errorf("error %q\nwant  %s:%s: ...%s...", msg, path, tt.at, want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if !sdk.IsKind(err, sdk.KindInvalidConfig) {
				t.Errorf("kind %v, want invalid config", sdk.KindOf(err))
			}
			if _, err := os.Stat(probe); err == nil {
				t.Fatalf("%s exists: something was executed", probe)
			}
		})
	}
}

// TestProbesWork shows that the probes would fire if the file were sourced
// by bash, so TestParseRefuses really proves nothing ran.
func TestProbesWork(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	for _, name := range []string{"cmd-subst", "backquote", "cmd-subst-dquote", "proc-subst", "function", "if", "pipeline", "redirect", "command", "eval"} {
		i := slices.IndexFunc(badConfigs, func(c struct{ name, src, at, want string }) bool { return c.name == name })
		dir := t.TempDir()
		probe := filepath.Join(dir, "probe")
		path := filepath.Join(dir, "config")
		src := strings.ReplaceAll(badConfigs[i].src, "PROBE", probe)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bash, "-c", `source "$1"; sleep 0.1`, "bash", path)
		cmd.Dir = dir
		cmd.Run()
		if _, err := os.Stat(probe); err != nil {
			t.Errorf("%s: bash did not create the probe: the test case proves nothing", name)
		}
	}
}

const goodConfig = `# a subhost config, as the scripts sourced it
IMG=/disks
DISKS=( vda:1:$IMG/d1.raw   # the root
        vdb:0:"${IMG}/d 2.raw" )
BRIDGES=( br0:52:54:00:12:34:56 'br1:52:54:00:12:34:57' )
export HOSTLABEL='lit $NOT a ref'
declare -a EMPTY=()
declare -ax ARR=(a b)
DISKS+=( vdc:0:/x.raw )
S=a; S+=b
readonly R=1
Q="a \"q\" \$x \\ \` + "`" + ` $IMG"
ESC=a\ b\*
SPLIT="p  q"
W=( $SPLIT "$SPLIT" x${SPLIT}y "" )
E=
declare -a A2=scalar
A3=(x y); A3=z
ARR+=c
X=$ARR
T=a~b U=x:y
typeset -x TS=1
declare -a LATE
LATE+=(one)
SC=1
SC+=(two)
NOTE="multi
line"
CONT=a\
b
`

func TestParseGood(t *testing.T) {
	f, err := Parse("/opt/sub/x/config", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]sdk.Var{
		"IMG":       {Words: []string{"/disks"}, Origin: "/opt/sub/x/config:2"},
		"DISKS":     {Words: []string{"vda:1:/disks/d1.raw", "vdb:0:/disks/d 2.raw", "vdc:0:/x.raw"}, IsArray: true, Origin: "/opt/sub/x/config:9"},
		"BRIDGES":   {Words: []string{"br0:52:54:00:12:34:56", "br1:52:54:00:12:34:57"}, IsArray: true, Origin: "/opt/sub/x/config:5"},
		"HOSTLABEL": {Words: []string{"lit $NOT a ref"}, Origin: "/opt/sub/x/config:6"},
		"EMPTY":     {Words: []string{}, IsArray: true, Origin: "/opt/sub/x/config:7"},
		"ARR":       {Words: []string{"ac", "b"}, IsArray: true, Origin: "/opt/sub/x/config:19"},
		"S":         {Words: []string{"ab"}, Origin: "/opt/sub/x/config:10"},
		"R":         {Words: []string{"1"}, Origin: "/opt/sub/x/config:11"},
		"Q":         {Words: []string{"a \"q\" $x \\ ` /disks"}, Origin: "/opt/sub/x/config:12"},
		"ESC":       {Words: []string{"a b*"}, Origin: "/opt/sub/x/config:13"},
		"SPLIT":     {Words: []string{"p  q"}, Origin: "/opt/sub/x/config:14"},
		"W":         {Words: []string{"p", "q", "p  q", "xp", "qy", ""}, IsArray: true, Origin: "/opt/sub/x/config:15"},
		"E":         {Words: []string{""}, Origin: "/opt/sub/x/config:16"},
		"A2":        {Words: []string{"scalar"}, IsArray: true, Origin: "/opt/sub/x/config:17"},
		"A3":        {Words: []string{"z", "y"}, IsArray: true, Origin: "/opt/sub/x/config:18"},
		"X":         {Words: []string{"ac"}, Origin: "/opt/sub/x/config:20"},
		"T":         {Words: []string{"a~b"}, Origin: "/opt/sub/x/config:21"},
		"U":         {Words: []string{"x:y"}, Origin: "/opt/sub/x/config:21"},
		"TS":        {Words: []string{"1"}, Origin: "/opt/sub/x/config:22"},
		"LATE":      {Words: []string{"one"}, IsArray: true, Origin: "/opt/sub/x/config:24"},
		"SC":        {Words: []string{"1", "two"}, IsArray: true, Origin: "/opt/sub/x/config:26"},
		"NOTE":      {Words: []string{"multi\nline"}, Origin: "/opt/sub/x/config:27"},
		"CONT":      {Words: []string{"ab"}, Origin: "/opt/sub/x/config:29"},
	}
	for name, w := range want {
		if got, ok := f.Vars[name]; !ok || !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %#v, want %#v", name, got, w)
		}
	}
	for name := range f.Vars {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected variable %s = %#v", name, f.Vars[name])
		}
	}
}

// TestParseMatchesBash sources the good config in bash and compares every
// variable's words and array-ness with ours.
func TestParseMatchesBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	f, err := Parse("config", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(goodConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range f.Vars {
		names = append(names, name)
	}
	slices.Sort(names)
	script := `source "$1"; shift
for n; do
	eval 'v=("${'$n'[@]}")'
	a=$(declare -p "$n"); a=${a#declare -}; a=${a%% *}
	arr=0; [[ $a == *a* ]] && arr=1
	printf '%s\0%s\0%s\0' "$n" "$arr" "${#v[@]}"
	if (( ${#v[@]} )); then printf '%s\0' "${v[@]}"; fi
done`
	out, err := exec.Command(bash, append([]string{"-c", script, "bash", path}, names...)...).Output()
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	fields := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	for len(fields) > 0 {
		name, isArray := fields[0], fields[1] == "1"
		n, _ := strconv.Atoi(fields[2])
		words := fields[3 : 3+n]
		fields = fields[3+n:]
		got := f.Vars[name]
		if !slices.Equal(got.Words, words) || got.IsArray != isArray {
			t.Errorf("%s: ours %q array=%v, bash %q array=%v", name, got.Words, got.IsArray, words, isArray)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	vars := map[string]sdk.Var{
		"DISKS":   {Words: []string{"vda:1:/a"}, IsArray: true, Origin: "config:1"},
		"BRIDGES": {Words: []string{"br0:52:54:00:00:00:01"}, IsArray: true, Origin: "config:2"},
		"OTHER":   {Words: []string{"x"}, Origin: "config:3"},
	}
	env := map[string]string{"DISKS": "  vda:1:/b\tvdb:0:/c\n", "OTHER": "y"}
	if err := ApplyEnv(vars, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	want := map[string]sdk.Var{
		"DISKS":   {Words: []string{"vda:1:/b", "vdb:0:/c"}, IsArray: true, Origin: "environment"},
		"BRIDGES": {Words: []string{"br0:52:54:00:00:00:01"}, IsArray: true, Origin: "config:2"},
		"OTHER":   {Words: []string{"x"}, Origin: "config:3"},
	}
	if !reflect.DeepEqual(vars, want) {
		t.Errorf("got %#v\nwant %#v", vars, want)
	}
	s := sdk.Subhost{Vars: vars}
	if s.Where("DISKS") != "environment" {
		t.Errorf("Where(DISKS) = %q", s.Where("DISKS"))
	}
}

// An environment value that is not UTF-8 is refused, naming the variable.
func TestApplyEnvRefusesValuesNotUTF8(t *testing.T) {
	vars := map[string]sdk.Var{}
	err := ApplyEnv(vars, func(k string) (string, bool) { return "vda:1:/srv/gr\xf6\xdfe.raw", k == "DISKS" })
	if want := "environment variable DISKS is not UTF-8 text"; err == nil || !strings.HasPrefix(err.Error(), want) || !sdk.IsKind(err, sdk.KindInvalidConfig) {
		t.Errorf("ApplyEnv: %v, want %q", err, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodConfig))
	for _, c := range badConfigs {
		f.Add([]byte(c.src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := Parse("config", src)
		if err != nil {
			if !sdk.IsKind(err, sdk.KindInvalidConfig) || !strings.HasPrefix(err.Error(), "config:") {
				t.Fatalf("error %q of kind %v", err, sdk.KindOf(err))
			}
			return
		}
		for name, v := range cfg.Vars {
			if !validVarName(name) || v.Words == nil && v.IsArray {
				t.Fatalf("bad variable %q %#v", name, v)
			}
			if !strings.HasPrefix(v.Origin, "config:") {
				t.Fatalf("origin %q", v.Origin)
			}
		}
	})
}

// TestParseRefusesValuesNotUTF8: values travel to the stages in protobuf
// strings, which must be UTF-8; one in another encoding is refused here,
// naming the variable and the line, in an array or a scalar. Comments
// may be in any encoding.
func TestParseRefusesValuesNotUTF8(t *testing.T) {
	for _, tc := range []struct{ src, at, name string }{
		{"# Gr\xf6\xdfe\nDISKS=( vda:1:/srv/gr\xf6\xdfe.raw )", "2:1", "DISKS"},
		{"X=1\nHOSTIF_PREFIX=caf\xe9", "2:1", "HOSTIF_PREFIX"},
	} {
		_, err := Parse("/etc/cfg", []byte(tc.src))
		want := "/etc/cfg:" + tc.at + ": the value of " + tc.name + " is not UTF-8 text"
		if err == nil || !strings.HasPrefix(err.Error(), want) || !sdk.IsKind(err, sdk.KindInvalidConfig) {
			t.Errorf("%q: %v, want %q", tc.src, err, want)
		}
	}
	if _, err := Parse("/etc/cfg", []byte("# Gr\xf6\xdfe\nX=1")); err != nil {
		t.Errorf("a comment in Latin-1: %v", err)
	}
}
