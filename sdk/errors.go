package sdk

import (
	"errors"
	"fmt"
)

// The rule for errors, in every stage and in the runner:
//
//   - A stage never names itself. The runner prefixes every stage error
//     with `stage "NAME": ` (the name of the pipeline block, which a site
//     may have given another plugin), so a stage that said "init: ..."
//     would be named twice, and wrongly once the block is renamed.
//   - A message names the element at fault and where it came from:
//     `DISKS[1] "vdb:x:/d.raw" (config /opt/sub/web1/config:3): partition
//     "x" is not a number`. Subhost.Where gives the place.
//   - One line, lower case, no trailing period; wrap the cause with %w.
//   - Pick the kind for what the operator must do: Invalidf for bad input
//     (exit 2, nothing was changed), Conflictf for something that exists
//     but is not as wanted or belongs to someone else, NotFoundf for what
//     should exist and does not, Internalf (or an untyped error) for the
//     rest.

// ErrorKind says what sort of failure a stage reports, so the runner can
// say the right thing (and exit 2 for bad input).
type ErrorKind int

const (
	// KindInternal is an unexpected failure; it is what an untyped error
	// becomes.
	KindInternal ErrorKind = iota
	// KindInvalidConfig is bad input: the config, a parameter, the boot
	// record. Nothing was changed.
	KindInvalidConfig
	// KindConflict is an object that exists but is not what was wanted,
	// or is someone else's.
	KindConflict
	// KindNotFound is a missing object that should have been there.
	KindNotFound
)

func (k ErrorKind) String() string {
	switch k {
	case KindInvalidConfig:
		return "invalid config"
	case KindConflict:
		return "conflict"
	case KindNotFound:
		return "not found"
	default:
		return "internal"
	}
}

// Error is a stage failure with a kind. Its message is one line meant for
// the operator.
type Error struct {
	Kind ErrorKind
	Msg  string
	err  error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.err }

func newError(kind ErrorKind, format string, args []any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: kind, Msg: err.Error(), err: errors.Unwrap(err)}
}

// Invalidf reports bad input. Like fmt.Errorf, it wraps a %w argument.
func Invalidf(format string, args ...any) error {
	return newError(KindInvalidConfig, format, args)
}

// Conflictf reports an object that exists but differs, or is not ours.
func Conflictf(format string, args ...any) error {
	return newError(KindConflict, format, args)
}

// NotFoundf reports a missing object.
func NotFoundf(format string, args ...any) error {
	return newError(KindNotFound, format, args)
}

// Internalf reports an unexpected failure.
func Internalf(format string, args ...any) error {
	return newError(KindInternal, format, args)
}

// KindOf returns the kind of the first *Error in err's tree; an untyped
// error is KindInternal.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// IsKind reports whether err is of that kind.
func IsKind(err error, kind ErrorKind) bool {
	return err != nil && KindOf(err) == kind
}

// Log keys that the runner and the SDK put on every line about a subhost
// or a stage call, so that a log can be filtered the same way whichever
// process wrote a line. Stages add their own keys for their own objects.
const (
	LogKeySubhost = "subhost"
	LogKeyStage   = "stage"
	LogKeyCall    = "call"
	LogKeyError   = "error"
)
