package pipeline

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"math/big"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"

	"github.com/subhost/subhost/sdk"
)

// DefaultTimeout bounds each stage call when the pipeline does not say.
const DefaultTimeout = 60 * time.Second

// Builtin is the Source of the built-in pipelines.
const Builtin = "builtin"

//go:embed builtin.hcl
var builtinHCL []byte

// Pipeline is a named sequence of stages.
type Pipeline struct {
	Name        string
	Description string
	// Home is the root under which subhosts' own directories live
	// (HOME/NAME), an absolute path.
	Home string
	// OnExit is "down" (tear everything down when the guest exits) or
	// "keep" (keep mounts and netns for re-entry).
	OnExit string
	Stages []Stage
	// Source is the file the pipeline was read from, or "builtin".
	Source string
	// Implied names the stages subhost added to the pipeline as written
	// (addCgroupStage).
	Implied []string

	// where is "FILE:LINE" of the pipeline block, for duplicate errors.
	where string
}

// Stage is one step of a pipeline.
type Stage struct {
	// Name is the stage's name in the pipeline, unique within it.
	Name string
	// Plugin is the executable to run: a plain name looked up in the
	// plugin directories, or an absolute path. It defaults to Name.
	Plugin string
	// Timeout bounds every call to this stage.
	Timeout time.Duration
	// SHA256 pins the plugin executable's checksum (lower-case hex), or "".
	SHA256 string
	// When names a config variable that gates the stage: it runs only
	// when the subhost's config sets that variable to a value other than
	// "no". "" runs it always.
	When string
	// Params are the block's other attributes, as strings.
	Params map[string]string
}

// Skipped reports whether the stage does not run for a subhost whose
// config this is (see When).
func (s Stage) Skipped(sub sdk.Subhost) bool {
	if s.When == "" {
		return false
	}
	v := sub.Scalar(s.When)
	return v == "" || v == "no"
}

// OnExit values.
const (
	OnExitDown = "down"
	OnExitKeep = "keep"
)

var (
	plainName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	varName   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// isSHA256Hex reports whether s is a SHA-256 sum in hex. Not a regexp:
// a package-level one with a {64} repetition is compiled at every CLI
// and supervisor start (0.03 ms of its package initialisation).
func isSHA256Hex(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 2*sha256.Size && err == nil
}

// reserved stage attributes; every other attribute is a parameter.
var reserved = []string{"plugin", "timeout", "sha256", "when"}

var fileSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{{Type: "pipeline", LabelNames: []string{"name"}}},
}

var pipelineSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "description"},
		{Name: "home", Required: true},
		{Name: "on_exit"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "stage", LabelNames: []string{"name"}}},
}

// parse reads one HCL file's pipelines, in file order. source is what
// Pipeline.Source says; filename is used in error positions.
func parse(src []byte, filename, source string, getenv func(string) (string, bool)) ([]*Pipeline, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	content, diags := f.Body.Content(fileSchema)
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	ctx := evalContext(getenv)
	var out []*Pipeline
	seen := map[string]*Pipeline{}
	for _, b := range content.Blocks {
		p, err := parsePipeline(b, source, ctx)
		if err != nil {
			return nil, err
		}
		if prev, ok := seen[p.Name]; ok {
			return nil, errAt(b.LabelRanges[0], "duplicate pipeline", fmt.Sprintf("pipeline %q is defined in both %s and %s", p.Name, prev.where, p.where))
		}
		seen[p.Name] = p
		out = append(out, p)
	}
	return out, nil
}

func parsePipeline(b *hcl.Block, source string, ctx *hcl.EvalContext) (*Pipeline, error) {
	name := b.Labels[0]
	if err := validPipelineName(name); err != "" {
		return nil, errAt(b.LabelRanges[0], "invalid pipeline name", err)
	}
	p := &Pipeline{
		Name:   name,
		OnExit: OnExitDown,
		Source: source,
		where:  fmt.Sprintf("%s:%d", b.DefRange.Filename, b.DefRange.Start.Line),
	}
	content, diags := b.Body.Content(pipelineSchema)
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	var err error
	if a, ok := content.Attributes["description"]; ok {
		if p.Description, err = stringAttr(a, ctx); err != nil {
			return nil, err
		}
	}
	a := content.Attributes["home"] // Required: Content has checked it is there
	if p.Home, err = stringAttr(a, ctx); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(p.Home) {
		detail := fmt.Sprintf("home must be an absolute path, not %q", p.Home)
		if call, ok := a.Expr.(*hclsyntax.FunctionCallExpr); ok && call.Name == "env" {
			detail += " (from the environment)"
		}
		return nil, errAt(a.Expr.Range(), "invalid home", detail)
	}
	p.Home = filepath.Clean(p.Home)
	if a, ok := content.Attributes["on_exit"]; ok {
		if p.OnExit, err = stringAttr(a, ctx); err != nil {
			return nil, err
		}
		if p.OnExit != OnExitDown && p.OnExit != OnExitKeep {
			return nil, errAt(a.Expr.Range(), "invalid on_exit", fmt.Sprintf("on_exit must be %q or %q, not %q", OnExitDown, OnExitKeep, p.OnExit))
		}
	}
	if len(content.Blocks) == 0 {
		return nil, errAt(b.DefRange, "no stages", fmt.Sprintf("pipeline %q has no stage blocks", name))
	}
	stageAt := map[string]hcl.Range{}
	for _, sb := range content.Blocks {
		st, err := parseStage(sb, ctx)
		if err != nil {
			return nil, err
		}
		if prev, ok := stageAt[st.Name]; ok {
			return nil, errAt(sb.LabelRanges[0], "duplicate stage", fmt.Sprintf("stage %q is already defined at line %d; stage names must be unique within a pipeline", st.Name, prev.Start.Line))
		}
		stageAt[st.Name] = sb.DefRange
		p.Stages = append(p.Stages, st)
	}
	p.addCgroupStage()
	return p, nil
}

// The shipped guest launcher, and the stage that gives its guest cgroups,
// limits and the device policy.
const (
	initPlugin   = "init"
	cgroupPlugin = "cgroup"
)

// addCgroupStage puts the cgroup stage just before the shipped init stage
// of a pipeline that has none. A site pipeline written before the cgroup
// stage existed keeps booting after an upgrade, and its guest still gets
// the device policy and the limits: init refuses a guest whose boot record
// carries no device policy, and a guest without one could open every host
// disk. A pipeline that launches its guest with its own plugin, or names
// a stage "cgroup" for something else, is left as written.
func (p *Pipeline) addCgroupStage() {
	at := -1
	for i, st := range p.Stages {
		switch {
		case st.Plugin == cgroupPlugin || st.Name == cgroupPlugin:
			return
		case st.Plugin == initPlugin && at < 0:
			at = i
		}
	}
	if at < 0 {
		return
	}
	st := Stage{Name: cgroupPlugin, Plugin: cgroupPlugin, Timeout: DefaultTimeout, Params: map[string]string{}}
	p.Stages = slices.Insert(p.Stages, at, st)
	p.Implied = append(p.Implied, cgroupPlugin)
}

func parseStage(b *hcl.Block, ctx *hcl.EvalContext) (Stage, error) {
	st := Stage{Name: b.Labels[0], Timeout: DefaultTimeout, Params: map[string]string{}}
	if !plainName.MatchString(st.Name) {
		return st, errAt(b.LabelRanges[0], "invalid stage name", fmt.Sprintf("stage name %q must be lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", st.Name))
	}
	st.Plugin = st.Name
	attrs, diags := b.Body.JustAttributes()
	if diags.HasErrors() {
		return st, diagError(diags)
	}
	// In file order, so the first error reported is the first in the file.
	list := make([]*hcl.Attribute, 0, len(attrs))
	for _, a := range attrs {
		list = append(list, a)
	}
	slices.SortFunc(list, func(a, b *hcl.Attribute) int { return a.Range.Start.Byte - b.Range.Start.Byte })
	for _, a := range list {
		switch a.Name {
		case "plugin":
			s, err := stringAttr(a, ctx)
			if err != nil {
				return st, err
			}
			switch {
			case filepath.IsAbs(s):
				st.Plugin = filepath.Clean(s)
			case plainName.MatchString(s):
				st.Plugin = s
			default:
				return st, errAt(a.Expr.Range(), "invalid plugin", fmt.Sprintf("plugin must be a plain name (lower-case letters, digits, '.', '_', '-') or an absolute path, not %q", s))
			}
		case "timeout":
			s, err := stringAttr(a, ctx)
			if err != nil {
				return st, err
			}
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return st, errAt(a.Expr.Range(), "invalid timeout", fmt.Sprintf("timeout must be a positive duration like \"30s\" or \"2m\", not %q", s))
			}
			st.Timeout = d
		case "sha256":
			s, err := stringAttr(a, ctx)
			if err != nil {
				return st, err
			}
			if !isSHA256Hex(s) {
				return st, errAt(a.Expr.Range(), "invalid sha256", fmt.Sprintf("sha256 must be 64 hexadecimal digits, not %q", s))
			}
			st.SHA256 = strings.ToLower(s)
		case "when":
			s, err := stringAttr(a, ctx)
			if err != nil {
				return st, err
			}
			if !varName.MatchString(s) {
				return st, errAt(a.Expr.Range(), "invalid when", fmt.Sprintf("when must name a config variable (letters, digits and '_', not starting with a digit), not %q", s))
			}
			st.When = s
		default:
			s, err := paramAttr(a, ctx)
			if err != nil {
				return st, err
			}
			st.Params[a.Name] = s
		}
	}
	return st, nil
}

// stringAttr evaluates an attribute that must be a string.
func stringAttr(a *hcl.Attribute, ctx *hcl.EvalContext) (string, error) {
	v, diags := a.Expr.Value(ctx)
	if diags.HasErrors() {
		return "", diagError(diags)
	}
	if v.IsNull() || !v.Type().Equals(cty.String) {
		return "", errAt(a.Expr.Range(), "invalid "+a.Name, fmt.Sprintf("%s must be a string, not %s", a.Name, typeName(v)))
	}
	return v.AsString(), nil
}

// paramAttr evaluates a stage parameter: a string as is, a number in its
// decimal spelling, a bool as "true" or "false".
func paramAttr(a *hcl.Attribute, ctx *hcl.EvalContext) (string, error) {
	v, diags := a.Expr.Value(ctx)
	if diags.HasErrors() {
		return "", diagError(diags)
	}
	if !v.IsNull() && v.IsWhollyKnown() {
		switch v.Type() {
		case cty.String:
			return v.AsString(), nil
		case cty.Number:
			return numberText(v.AsBigFloat()), nil
		case cty.Bool:
			s, _ := convert.Convert(v, cty.String)
			return s.AsString(), nil
		}
	}
	return "", errAt(a.Expr.Range(), "invalid parameter", fmt.Sprintf("stage parameter %s must be a string, number or bool, not %s", a.Name, typeName(v)))
}

func numberText(f *big.Float) string {
	if f.IsInt() {
		i, _ := f.Int(nil)
		return i.String()
	}
	return f.Text('f', -1)
}

func typeName(v cty.Value) string {
	t := v.Type()
	switch {
	case v.IsNull():
		return "null"
	case t.IsTupleType() || t.IsListType() || t.IsSetType():
		return "a list"
	case t.IsObjectType() || t.IsMapType():
		return "a map"
	case t == cty.Number:
		return "a number"
	case t == cty.Bool:
		return "a bool"
	}
	return t.FriendlyName()
}

// evalContext offers env(NAME, DEFAULT): the environment variable, or
// DEFAULT when it is unset or empty (as the scripts' ${NAME:-DEFAULT}).
func evalContext(getenv func(string) (string, bool)) *hcl.EvalContext {
	env := function.New(&function.Spec{
		Description: "An environment variable's value, or a default when it is unset or empty.",
		Params: []function.Parameter{
			{Name: "name", Type: cty.String},
			{Name: "default", Type: cty.String},
		},
		Type: function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if v, ok := getenv(args[0].AsString()); ok && v != "" {
				return cty.StringVal(v), nil
			}
			return args[1], nil
		},
	})
	return &hcl.EvalContext{Functions: map[string]function.Function{"env": env}}
}

func validPipelineName(name string) string {
	switch {
	case name == "":
		return "pipeline name is empty"
	case strings.IndexFunc(name, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_')
	}) >= 0:
		return fmt.Sprintf("pipeline name %q: only letters, digits, \"-\" and \"_\" are allowed", name)
	case len(name) > 32:
		return fmt.Sprintf("pipeline name %q is too long (%d characters, at most 32)", name, len(name))
	case name[0] == '-' || name[0] == '_':
		return fmt.Sprintf("pipeline name %q must start with a letter or digit", name)
	}
	return ""
}

// errAt is one of our own errors in the form HCL's are reported.
func errAt(r hcl.Range, summary, detail string) error {
	return diagError(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()}})
}

// diagError turns HCL diagnostics into one line, "FILE:LINE,COL: summary:
// detail", naming the first error and how many more there are.
func diagError(diags hcl.Diagnostics) error {
	errs := diags.Errs()
	if len(errs) == 0 {
		return nil
	}
	var d *hcl.Diagnostic
	for _, x := range diags {
		if x.Severity == hcl.DiagError {
			d = x
			break
		}
	}
	var b strings.Builder
	if d.Subject != nil {
		fmt.Fprintf(&b, "%s:%d,%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
	}
	b.WriteString(oneLine(d.Summary))
	if d.Detail != "" {
		b.WriteString(": ")
		b.WriteString(oneLine(d.Detail))
	}
	if len(errs) > 1 {
		fmt.Fprintf(&b, " (and %d more errors)", len(errs)-1)
	}
	return sdk.Invalidf("%s", b.String())
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
