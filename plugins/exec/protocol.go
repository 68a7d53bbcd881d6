package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/subhost/subhost/sdk"
)

// What the script sees and what it may answer: its environment, its
// standard input and the output it may print.

// Verbs, passed as $1.
const (
	verbValidate = "validate"
	verbUp       = "up"
	verbDown     = "down"
	verbCheck    = "check"
)

// scriptPath is the same PATH every plugin gets from the runner.
const scriptPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// paramScript names the executable; every parameter, this one included,
// also reaches the script.
const paramScript = "script"

// envName turns a parameter name into the suffix of its variable:
// upper-cased, with every character a shell variable name cannot hold
// ('-' first of all: pipeline attributes may contain it) turned into '_'.
func envName(param string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			return r
		default:
			return '_'
		}
	}, param)
}

// checkEnv reports parameters or config variables that cannot be passed
// in the environment: two parameters that become one variable, a value
// with a NUL byte.
func checkEnv(req *sdk.Request) error {
	seen := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(req.Params)) {
		v := "SUBHOST_PARAM_" + envName(name)
		if other, ok := seen[v]; ok {
			return sdk.Invalidf("parameters %q and %q would both be %s: rename one", other, name, v)
		}
		seen[v] = name
		if strings.ContainsRune(req.Params[name], 0) {
			return sdk.Invalidf("parameter %s holds a NUL byte, which the environment cannot carry", name)
		}
	}
	for name, v := range req.Subhost.Vars {
		if strings.ContainsRune(name, 0) || slices.ContainsFunc(v.Words, func(w string) bool { return strings.ContainsRune(w, 0) }) {
			return sdk.Invalidf("%s: variable %s holds a NUL byte, which the environment cannot carry", req.Subhost.Where(name), name)
		}
	}
	return nil
}

// scriptEnv is the script's whole environment, sorted. The boot record's
// facts are empty when not known (validate's record is always empty), so
// that a script under `set -u` may test them.
func scriptEnv(req *sdk.Request) []string {
	pid := ""
	if req.Record.GuestPID != 0 {
		pid = strconv.Itoa(req.Record.GuestPID)
	}
	env := []string{
		"PATH=" + scriptPath,
		"SUBHOST_NAME=" + req.Subhost.Name,
		"SUBHOST_HOME=" + req.Subhost.Home,
		"SUBHOST_STAGE=" + req.Stage,
		"SUBHOST_ROOT=" + req.Record.Root,
		"SUBHOST_NETNS=" + req.Record.Netns,
		"SUBHOST_PID=" + pid,
	}
	for name, v := range req.Params {
		env = append(env, "SUBHOST_PARAM_"+envName(name)+"="+v)
	}
	for name, v := range req.Subhost.Vars {
		env = append(env, "SUBHOST_VAR_"+name+"="+strings.Join(v.Words, " "))
	}
	slices.Sort(env)
	return env
}

// scriptInput is the JSON on the script's standard input: the request as
// every stage gets it (sdk.Request), with the verb, and the state as the
// JSON the script printed (not base64, as sdk.Request would have it).
type scriptInput struct {
	Verb string `json:"verb"`
	*sdk.Request
	State json.RawMessage `json:"state,omitempty"` // hides Request.State
}

func stdinFor(verb string, req *sdk.Request) ([]byte, error) {
	in := scriptInput{Verb: verb, Request: req}
	// The state is what this stage kept from the script's output, so it is
	// JSON; anything else (a state from another plugin that ran this
	// stage before) is not passed on.
	if json.Valid(req.State) {
		in.State = req.State
	}
	return json.Marshal(in)
}

// scriptOutput is what a script may print on success.
type scriptOutput struct {
	Extra map[string]string
	State []byte // JSON, nil when the script printed none (or null)
}

// outputShape is said in every error about a script's output.
const outputShape = `want nothing, or one JSON object {"extra": {"key": "value"}, "state": ...}`

// parseOutput reads a script's standard output: empty, or one JSON object
// with only the keys extra (names to strings) and state (any JSON).
func parseOutput(out []byte) (scriptOutput, error) {
	var res scriptOutput
	out = bytes.TrimSpace(out)
	if len(out) == 0 {
		return res, nil
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(out))
	if out[0] != '{' {
		return res, fmt.Errorf("it printed %s: %s", quoteStart(out), outputShape)
	}
	if err := dec.Decode(&raw); err != nil {
		return res, fmt.Errorf("it printed %s, which is not one JSON object (%v): %s", quoteStart(out), err, outputShape)
	}
	if dec.InputOffset() != int64(len(out)) {
		return res, fmt.Errorf("it printed more after its JSON object (%s): %s", quoteStart(bytes.TrimSpace(out[dec.InputOffset():])), outputShape)
	}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		switch k {
		case "extra":
			extra, err := parseExtra(raw[k])
			if err != nil {
				return res, err
			}
			res.Extra = extra
		case "state":
			if s := raw[k]; !bytes.Equal(s, []byte("null")) {
				res.State = s
			}
		default:
			return res, fmt.Errorf("its JSON has the key %q: %s", k, outputShape)
		}
	}
	return res, nil
}

func parseExtra(raw json.RawMessage) (map[string]string, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf(`its "extra" is %s, not an object: %s`, quoteStart(raw), outputShape)
	}
	extra := make(map[string]string, len(fields))
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		var v string
		if err := json.Unmarshal(fields[k], &v); err != nil {
			return nil, fmt.Errorf(`its "extra" key %q is %s, not a string: %s`, k, quoteStart(fields[k]), outputShape)
		}
		if k == "" || strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf(`its "extra" has an empty key or a NUL byte (key %q)`, k)
		}
		// A key is a name `subhost status` prints as it is: a line
		// break or an escape sequence in it (made from a tenant's
		// data, say) would forge the status an operator reads.
		if i := strings.IndexFunc(k, func(r rune) bool { return !unicode.IsPrint(r) }); i >= 0 {
			return nil, fmt.Errorf(`its "extra" key %q has a character that is not printable, at byte %d`, k, i)
		}
		extra[k] = v
	}
	if len(extra) == 0 {
		return nil, nil
	}
	return extra, nil
}

// quoteStart quotes the first few dozen bytes of what a script printed,
// for an error message that must stay one line.
func quoteStart(b []byte) string {
	const max = 40
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}
