package sdk

import (
	"errors"
	"fmt"
)

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
