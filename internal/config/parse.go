package config

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"mvdan.cc/sh/v3/syntax"

	"github.com/subhost/subhost/sdk"
)

// File is a parsed config.
type File struct {
	// Path is the file that was read.
	Path string
	// Vars holds every variable the file set. Origin is "FILE:LINE" of the
	// last assignment that changed it.
	Vars map[string]sdk.Var
}

// Parse reads config source text. name is the file's path, used in error
// messages ("NAME:LINE:COL: ...") and in each variable's Origin. Nothing
// in src is ever executed.
func Parse(name string, src []byte) (*File, error) {
	// bash takes any bytes, and an old config may have a comment in
	// Latin-1; the parser takes UTF-8 only. Each stray byte becomes
	// U+FFFD for the parser, and a value that has one is refused (assign).
	notUTF8 := !utf8.Valid(src)
	if notUTF8 {
		src = markInvalidUTF8(src)
	}
	parser := syntax.NewParser(syntax.Variant(syntax.LangBash))
	f, err := parser.Parse(bytes.NewReader(src), name)
	if err != nil {
		return nil, parseError(name, err)
	}
	p := &reader{name: name, vars: map[string]sdk.Var{}, readonly: map[string]string{}, notUTF8: notUTF8}
	for _, st := range f.Stmts {
		if err := p.stmt(st); err != nil {
			return nil, err
		}
	}
	return &File{Path: name, Vars: p.vars}, nil
}

// markInvalidUTF8 replaces each byte of src that is not part of valid
// UTF-8 with U+FFFD.
func markInvalidUTF8(src []byte) []byte {
	out := make([]byte, 0, len(src)+16)
	for len(src) > 0 {
		r, n := utf8.DecodeRune(src)
		if r == utf8.RuneError && n <= 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
			src = src[1:]
			continue
		}
		out = append(out, src[:n]...)
		src = src[n:]
	}
	return out
}

// parseError turns the parser's error into one FILE:LINE:COL line of the
// invalid-config kind.
func parseError(name string, err error) error {
	var pe syntax.ParseError
	if errors.As(err, &pe) {
		return sdk.Invalidf("%s:%d:%d: %s", name, pe.Pos.Line(), pe.Pos.Col(), pe.Text)
	}
	var le syntax.LangError
	if errors.As(err, &le) {
		return sdk.Invalidf("%s:%d:%d: %s is not allowed in a config", name, le.Pos.Line(), le.Pos.Col(), le.Feature)
	}
	return sdk.Invalidf("%s: %v", name, err)
}

// reader holds the variables set so far; references may only name those.
type reader struct {
	name     string
	vars     map[string]sdk.Var
	readonly map[string]string // name -> where it was made readonly
	notUTF8  bool              // the source had bytes that are not UTF-8, now U+FFFD
}

func (p *reader) errAt(pos syntax.Pos, format string, args ...any) error {
	return sdk.Invalidf("%s:%d:%d: %s", p.name, pos.Line(), pos.Col(), fmt.Sprintf(format, args...))
}

func (p *reader) notAllowed(pos syntax.Pos, what string) error {
	return p.errAt(pos, "%s is not allowed in a config", what)
}

func (p *reader) stmt(st *syntax.Stmt) error {
	switch {
	case st.Negated:
		return p.notAllowed(st.Pos(), "negation with \"!\"")
	case st.Background:
		return p.notAllowed(st.Semicolon, "running in the background with \"&\"")
	case st.Coprocess || st.Disown:
		return p.notAllowed(st.Semicolon, "\"|&\"")
	case len(st.Redirs) > 0:
		return p.notAllowed(st.Redirs[0].OpPos, "redirection")
	}
	switch cmd := st.Cmd.(type) {
	case *syntax.CallExpr:
		if len(cmd.Args) > 0 {
			return p.command(cmd.Args[0])
		}
		for _, a := range cmd.Assigns {
			if err := p.assign(a, declFlags{}); err != nil {
				return err
			}
		}
		return nil
	case *syntax.DeclClause:
		return p.decl(cmd)
	case nil:
		return p.notAllowed(st.Pos(), "an empty command")
	case *syntax.FuncDecl:
		return p.notAllowed(cmd.Pos(), "a function definition")
	case *syntax.IfClause:
		return p.notAllowed(cmd.Pos(), "control flow (if)")
	case *syntax.WhileClause:
		if cmd.Until {
			return p.notAllowed(cmd.Pos(), "control flow (until)")
		}
		return p.notAllowed(cmd.Pos(), "control flow (while)")
	case *syntax.ForClause:
		return p.notAllowed(cmd.Pos(), "control flow (for)")
	case *syntax.CaseClause:
		return p.notAllowed(cmd.Pos(), "control flow (case)")
	case *syntax.Block:
		return p.notAllowed(cmd.Pos(), "a { ... } block")
	case *syntax.Subshell:
		return p.notAllowed(cmd.Pos(), "a ( ... ) subshell")
	case *syntax.BinaryCmd:
		switch cmd.Op {
		case syntax.Pipe, syntax.PipeAll:
			return p.notAllowed(cmd.OpPos, "a pipeline")
		default:
			return p.notAllowed(cmd.OpPos, fmt.Sprintf("control flow (%s)", cmd.Op))
		}
	case *syntax.ArithmCmd:
		return p.notAllowed(cmd.Pos(), "arithmetic")
	case *syntax.LetClause:
		return p.notAllowed(cmd.Pos(), "arithmetic (let)")
	case *syntax.TestClause:
		return p.notAllowed(cmd.Pos(), "a [[ ... ]] test")
	case *syntax.TimeClause:
		return p.notAllowed(cmd.Pos(), "time")
	case *syntax.CoprocClause:
		return p.notAllowed(cmd.Pos(), "coproc")
	default:
		return p.notAllowed(st.Pos(), "this construct")
	}
}

// command reports a statement that runs a command. When the command word
// itself holds a forbidden expansion, that is the more useful message.
func (p *reader) command(w *syntax.Word) error {
	if lit := w.Lit(); lit != "" {
		return p.errAt(w.Pos(), "command %q is not allowed in a config: only variable assignments are", lit)
	}
	if _, err := p.words(w, false, false); err != nil {
		return err
	}
	return p.errAt(w.Pos(), "a command is not allowed in a config: only variable assignments are")
}

// declFlags are the attributes a declare/export/readonly gives.
type declFlags struct {
	array    bool
	readonly bool
}

func (p *reader) decl(d *syntax.DeclClause) error {
	var fl declFlags
	allowed := ""
	switch d.Variant.Value {
	case "declare", "typeset":
		allowed = "axrg"
	case "export":
	case "readonly":
		fl.readonly = true
		allowed = "a"
	default:
		return p.notAllowed(d.Pos(), fmt.Sprintf("%q", d.Variant.Value))
	}
	for _, a := range d.Args {
		if a.Name != nil {
			if err := p.assign(a, fl); err != nil {
				return err
			}
			continue
		}
		// A flag like -a, or a word that is not NAME=...
		opt := ""
		if a.Value != nil {
			opt = a.Value.Lit()
		}
		if len(opt) < 2 || opt[0] != '-' {
			return p.errAt(a.Pos(), "%s takes only NAME or NAME=VALUE arguments in a config", d.Variant.Value)
		}
		for _, c := range opt[1:] {
			if !strings.ContainsRune(allowed, c) {
				return p.errAt(a.Pos(), "%s option -%c is not allowed in a config", d.Variant.Value, c)
			}
			switch c {
			case 'a':
				fl.array = true
			case 'r':
				fl.readonly = true
			}
		}
	}
	return nil
}

func (p *reader) assign(a *syntax.Assign, fl declFlags) error {
	name := a.Name.Value
	if a.Index != nil {
		return p.notAllowed(a.Pos(), fmt.Sprintf("indexed assignment %s[...]", name))
	}
	if name == "IFS" && !a.Naked {
		// It would change how bash splits unquoted references.
		return p.notAllowed(a.Pos(), "assigning IFS")
	}
	origin := fmt.Sprintf("%s:%d", p.name, a.Name.Pos().Line())
	old, exists := p.vars[name]
	if where, ro := p.readonly[name]; ro && !a.Naked {
		return p.errAt(a.Pos(), "%s is readonly (made so at %s)", name, where)
	}
	var v sdk.Var
	switch {
	case a.Naked:
		// declare -a X, export X, readonly X: attributes only.
		if !exists && !fl.array {
			break
		}
		v = sdk.Var{Words: slices.Clone(old.Words), IsArray: old.IsArray || fl.array, Origin: old.Origin}
		if v.Words == nil {
			v.Words = []string{}
		}
		if !exists {
			v.Origin = origin
		}
		p.vars[name] = v
	case a.Array != nil:
		words := []string{}
		for _, el := range a.Array.Elems {
			if el.Index != nil {
				return p.notAllowed(el.Pos(), "an indexed array element [...]=")
			}
			fields, err := p.words(el.Value, true, false)
			if err != nil {
				return err
			}
			words = append(words, fields...)
		}
		if a.Append && exists {
			words = append(slices.Clone(old.Words), words...)
		}
		p.vars[name] = sdk.Var{Words: words, IsArray: true, Origin: origin}
	default:
		s := ""
		if a.Value != nil {
			fields, err := p.words(a.Value, false, true)
			if err != nil {
				return err
			}
			s = fields[0]
		}
		// As in bash, a scalar assignment to an array sets its first
		// element, and += appends to that element's string.
		words := slices.Clone(old.Words)
		switch {
		case !exists || len(words) == 0:
			words = []string{s}
		case a.Append:
			words[0] += s
		default:
			words[0] = s
		}
		p.vars[name] = sdk.Var{Words: words, IsArray: old.IsArray || fl.array, Origin: origin}
	}
	// The values travel to the stages in protobuf strings, which must be
	// UTF-8: a file name in another encoding would fail every stage's
	// call with a message naming neither the variable nor the file.
	for _, w := range p.vars[name].Words {
		if p.notUTF8 && strings.ContainsRune(w, utf8.RuneError) {
			return p.errAt(a.Pos(), "the value of %s is not UTF-8 text (a name in another encoding?)", name)
		}
	}
	if fl.readonly {
		if _, ro := p.readonly[name]; !ro {
			p.readonly[name] = origin
		}
	}
	return nil
}

// words evaluates a word as bash would without running anything. With
// split (array elements), unquoted references are split at whitespace as
// bash does, and the result may be zero or more fields; otherwise it is
// exactly one string. assign says the word is a scalar assignment's value,
// where bash also expands a tilde after ':'.
func (p *reader) words(w *syntax.Word, split, assign bool) ([]string, error) {
	// Brace expansion: bash would turn a{b,c} into two words.
	if syntax.SplitBraces(&syntax.Word{Parts: slices.Clone(w.Parts)}) {
		return nil, p.errAt(p.bracePos(w), "brace expansion is not allowed in a config (quote it)")
	}

	var fields []string
	var cur strings.Builder
	have := false // cur is a field, even if empty ("")
	flush := func() {
		if have {
			fields = append(fields, cur.String())
		}
		cur.Reset()
		have = false
	}
	afterColon := false
	for i, part := range w.Parts {
		switch x := part.(type) {
		case *syntax.Lit:
			s, colon, err := p.unquotedLit(x, i == 0, assign, afterColon)
			if err != nil {
				return nil, err
			}
			afterColon = colon
			cur.WriteString(s)
			have = have || s != ""
			continue
		case *syntax.SglQuoted:
			if x.Dollar {
				return nil, p.errAt(x.Pos(), "$'...' quoting is not allowed in a config (use '...' or \"...\")")
			}
			cur.WriteString(x.Value)
			have = true
		case *syntax.DblQuoted:
			s, err := p.dblQuoted(x)
			if err != nil {
				return nil, err
			}
			cur.WriteString(s)
			have = true
		case *syntax.ParamExp:
			val, err := p.ref(x)
			if err != nil {
				return nil, err
			}
			if !split {
				cur.WriteString(val)
				have = true
				break
			}
			if strings.ContainsAny(val, "*?[") {
				return nil, p.errAt(x.Pos(), "unquoted $%s expands to %q, which bash would glob: quote it", x.Param.Value, val)
			}
			// Field splitting with the default IFS.
			if val != "" && isIFS(val[0]) {
				flush()
			}
			for j, f := range strings.Fields(val) {
				if j > 0 {
					flush()
				}
				cur.WriteString(f)
				have = true
			}
			if val != "" && isIFS(val[len(val)-1]) {
				flush()
			}
		default:
			return nil, p.partError(part)
		}
		afterColon = false
	}
	flush()
	if !split {
		return []string{strings.Join(fields, "")}, nil
	}
	return fields, nil
}

// bracePos finds the '{' that starts the first brace expansion in w (the
// nodes SplitBraces makes carry no useful positions).
func (p *reader) bracePos(w *syntax.Word) syntax.Pos {
	for i, part := range w.Parts {
		l, ok := part.(*syntax.Lit)
		if !ok {
			continue
		}
		for j := 0; j < len(l.Value); j++ {
			switch l.Value[j] {
			case '\\':
				j++
			case '{':
				rest := &syntax.Word{Parts: append([]syntax.WordPart{&syntax.Lit{Value: l.Value[j:]}}, w.Parts[i+1:]...)}
				if syntax.SplitBraces(rest) {
					if _, ok := rest.Parts[0].(*syntax.BraceExp); ok {
						return litPos(l, j)
					}
				}
			}
		}
	}
	return w.Pos()
}

func isIFS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' }

// partError names a word part that would make bash run or compute
// something.
func (p *reader) partError(part syntax.WordPart) error {
	switch x := part.(type) {
	case *syntax.CmdSubst:
		return p.notAllowed(x.Pos(), "command substitution")
	case *syntax.ArithmExp:
		return p.notAllowed(x.Pos(), "arithmetic")
	case *syntax.ProcSubst:
		return p.notAllowed(x.Pos(), "process substitution")
	case *syntax.ExtGlob:
		return p.notAllowed(x.Pos(), "an extended glob")
	case *syntax.BraceExp:
		return p.notAllowed(x.Pos(), "brace expansion")
	default:
		return p.notAllowed(part.Pos(), "this expansion")
	}
}

// unquotedLit removes backslash quoting from an unquoted literal and
// refuses glob characters and tilde expansion. It reports whether the
// literal ends with an unquoted ':' (after which an assignment value
// expands '~').
func (p *reader) unquotedLit(l *syntax.Lit, first, assign, afterColon bool) (string, bool, error) {
	v := l.Value
	var b strings.Builder
	prevColon := afterColon
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\':
			i++
			if i < len(v) && v[i] != '\n' {
				b.WriteByte(v[i])
			} else if i >= len(v) {
				b.WriteByte('\\')
			}
			prevColon = false
			continue
		case c == '*' || c == '?' || c == '[':
			return "", false, p.errAt(litPos(l, i), "glob character %q is not allowed in a config (quote it)", c)
		case c == '~' && (i == 0 && first || assign && prevColon):
			return "", false, p.errAt(litPos(l, i), "tilde expansion is not allowed in a config (write the path out)")
		}
		b.WriteByte(c)
		prevColon = c == ':'
	}
	return b.String(), prevColon, nil
}

// litPos is the position of byte i of a literal.
func litPos(l *syntax.Lit, i int) syntax.Pos {
	line, col := l.Pos().Line(), l.Pos().Col()
	for j := 0; j < i && j < len(l.Value); j++ {
		if l.Value[j] == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return syntax.NewPos(l.Pos().Offset()+uint(i), line, col)
}

func (p *reader) dblQuoted(q *syntax.DblQuoted) (string, error) {
	var b strings.Builder
	for _, part := range q.Parts {
		switch x := part.(type) {
		case *syntax.Lit:
			// Inside double quotes a backslash quotes only $ ` " \ and
			// newline.
			v := x.Value
			for i := 0; i < len(v); i++ {
				if v[i] == '\\' && i+1 < len(v) && strings.IndexByte("$`\"\\\n", v[i+1]) >= 0 {
					i++
					if v[i] != '\n' {
						b.WriteByte(v[i])
					}
					continue
				}
				b.WriteByte(v[i])
			}
		case *syntax.ParamExp:
			val, err := p.ref(x)
			if err != nil {
				return "", err
			}
			b.WriteString(val)
		default:
			return "", p.partError(part)
		}
	}
	return b.String(), nil
}

// ref evaluates $NAME or ${NAME}: the variable's first word, as bash's
// "$NAME" is for an array.
func (p *reader) ref(x *syntax.ParamExp) (string, error) {
	if x.Param == nil || x.Flags != nil || x.Excl || x.Length || x.Width || x.IsSet ||
		x.Split != syntax.OptUnset || x.GlobSubst != syntax.OptUnset || x.RcExpand != syntax.OptUnset ||
		x.NestedParam != nil || x.Index != nil || len(x.Modifiers) > 0 ||
		x.Slice != nil || x.Repl != nil || x.Names != 0 || x.Exp != nil {
		return "", p.errAt(x.Pos(), "only plain $NAME or ${NAME} references are allowed in a config")
	}
	name := x.Param.Value
	if !validVarName(name) {
		return "", p.notAllowed(x.Pos(), fmt.Sprintf("special parameter $%s", name))
	}
	v, ok := p.vars[name]
	if !ok {
		return "", p.errAt(x.Pos(), "variable %s is not set earlier in this config", name)
	}
	if len(v.Words) == 0 {
		return "", nil
	}
	return v.Words[0], nil
}

func validVarName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
