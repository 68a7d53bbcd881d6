package ansible

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/subhost/subhost/internal/config"
	"github.com/subhost/subhost/internal/testguest"
)

// renderer is the collection's config renderer, a stdlib-only module.
const renderer = "ansible_collections/subhost/subhost/plugins/module_utils/subhost_config.py"

// renderScript loads the renderer by path (outside Ansible) and renders
// each config of a JSON list read on stdin: {"text": ...} or {"error": ...}.
const renderScript = `
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("subhost_config", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
out = []
for cfg in json.load(sys.stdin):
    try:
        out.append({"text": m.render("t1", m.normalize(cfg))})
    except m.ConfigError as e:
        out.append({"error": str(e)})
json.dump(out, sys.stdout)
`

// render runs the Python renderer on every config.
func render(t *testing.T, configs []map[string]any) []struct{ Text, Error string } {
	t.Helper()
	in, err := json.Marshal(configs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testguest.Tool(t, "python3", "python3"), "-c", renderScript, renderer)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 renderer: %v\n%s", err, stderr.String())
	}
	var res []struct{ Text, Error string }
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(configs) {
		t.Fatalf("renderer output %q: %v", out, err)
	}
	return res
}

// Every value the renderer accepts reads back, through subhost's own
// parser, as exactly that value: scalars as scalars, lists as arrays.
func TestRenderedConfigReadsBackExactly(t *testing.T) {
	hard := []string{
		"", " ", "a b", "  lead and trail  ", "tab\there", "it's", `say "hi"`, `'`, `"`, `''`, `\`, `a\b`, `\\`, `\'`,
		"$HOME", "${HOME}", "$(id)", "`id`", "$((1+2))", "*", "*.raw", "a?b", "[abc]", "a[", "{a,b}", "a{b,c}d",
		"~", "~root", "/x:~/y", "a:~", "!", "!!", "a!b", "#not a comment", "a #b", ";", "a;b", "&", "|", "<", ">",
		"()", "(", ")", "=", "a=b", "-x", "--", "%", "^", "\u00e9t\u00e9 \u2603", "\r", "\x01\x1b[0m",
		"vda:1:/srv/disks/web 1.raw", "homenet:06:a7:dd:b4:02:f2",
	}
	var configs []map[string]any
	for _, v := range hard {
		configs = append(configs, map[string]any{"X": v}, map[string]any{"A": []string{v}}, map[string]any{"A": []string{v, v, "z"}})
	}
	configs = append(configs,
		map[string]any{"DISKS": []string{}},
		map[string]any{"EMPTY": []string{""}},
		map[string]any{"A": []string{"", ""}},
		map[string]any{"N": 42, "F": 1.5, "L": []any{1, "two"}},
		map[string]any{"_lower_ok": "x", "DISKS": []string{"vda:1:/d/a.raw", "vdb:0:/d/b.raw"}, "BRIDGES": []string{"br0:06:00:00:00:00:01"}, "NOTE": "same"},
	)
	for i, r := range render(t, configs) {
		cfg := configs[i]
		if r.Error != "" {
			t.Errorf("config %v refused: %s", cfg, r.Error)
			continue
		}
		f, err := config.Parse("config", []byte(r.Text))
		if err != nil {
			t.Errorf("config %v: rendered\n%s\nwhich subhost refuses: %v", cfg, r.Text, err)
			continue
		}
		if len(f.Vars) != len(cfg) {
			t.Errorf("config %v: read back %d variables: %v", cfg, len(f.Vars), f.Vars)
		}
		for name, want := range cfg {
			got, ok := f.Vars[name]
			wantWords, wantArray := words(want)
			if !ok || got.IsArray != wantArray || !slices.Equal(got.Words, wantWords) {
				t.Errorf("config %v: %s reads back as %#v from\n%s", cfg, name, got, r.Text)
			}
		}
	}
}

// words is what the renderer makes of a value: Python's str() of a number.
func words(v any) ([]string, bool) {
	switch v := v.(type) {
	case []string:
		return v, true
	case []any:
		var out []string
		for _, x := range v {
			w, _ := words(x)
			out = append(out, w...)
		}
		return out, true
	case string:
		return []string{v}, false
	default:
		return []string{fmt.Sprint(v)}, false
	}
}

// What a config cannot hold is refused with one line naming the variable.
func TestRenderRefuses(t *testing.T) {
	cases := []struct {
		config map[string]any
		want   string
	}{
		{map[string]any{"NOTE": "two\nlines"}, "config NOTE: the value holds a newline, which a subhost config cannot carry"},
		{map[string]any{"DISKS": []string{"ok", "a\nb"}}, "config DISKS[1]: the value holds a newline"},
		{map[string]any{"NOTE": "nul\x00"}, "config NOTE: the value holds a NUL byte"},
		{map[string]any{"1X": "a"}, "config variable name '1X'"},
		{map[string]any{"A-B": "a"}, "config variable name 'A-B'"},
		{map[string]any{"IFS": ":"}, "config IFS: subhost refuses to set IFS"},
		{map[string]any{"ON": true}, "config ON: True is not a string (quote it in the playbook)"},
		{map[string]any{"NONE": nil}, "config NONE: None is not a string"},
		{map[string]any{"D": map[string]any{"a": "b"}}, "config D: a dict is not a string"},
		{map[string]any{"L": []any{[]string{"x"}}}, "config L[0]: a list is not a string"},
	}
	var configs []map[string]any
	for _, tc := range cases {
		configs = append(configs, tc.config)
	}
	for i, r := range render(t, configs) {
		tc := cases[i]
		if r.Error == "" || !strings.HasPrefix(r.Error, tc.want) || strings.Contains(r.Error, "\n") {
			t.Errorf("config %q: error %q, want one line starting %q (rendered %q)", tc.config, r.Error, tc.want, r.Text)
		}
	}
}

// The renderer file is where the test expects it.
func TestRendererExists(t *testing.T) {
	if _, err := os.Stat(filepath.FromSlash(renderer)); err != nil {
		t.Fatal(err)
	}
}
