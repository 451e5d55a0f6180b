// Package apperr is the one error type of the application. Capability
// packages return *Error values (or wrap them with %w); the HTTP layer maps
// the code to a status in exactly one place and renders the one JSON error
// shape. Anything else is an internal error: logged, never shown.
package apperr

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Code classifies an error; it is stable and part of the API.
type Code string

// The error codes of the API.
const (
	Invalid         Code = "invalid"          // 400: bad input, see Fields
	Unauthenticated Code = "unauthenticated"  // 401
	Forbidden       Code = "forbidden"        // 403
	NotFound        Code = "not_found"        // 404
	Conflict        Code = "conflict"         // 409
	TooLarge        Code = "too_large"        // 413
	Unsupported     Code = "unsupported"      // 415
	RateLimited     Code = "rate_limited"     // 429
	Unavailable     Code = "unavailable"      // 503
	Internal        Code = "internal"         // 500
	PreconditionReq Code = "precondition_req" // 428: a required header is missing
)

// Error is an application error with a code, a message meant for the client
// and, for validation errors, a message per field.
type Error struct {
	Code    Code
	Message string
	Fields  map[string]string
	// Details is extra machine-readable context (e.g. the current state of
	// a referral on a 409). It must never hold secrets.
	Details map[string]any
	Err     error // the cause, logged but never shown
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(string(e.Code))
	b.WriteString(": ")
	b.WriteString(e.Message)
	if len(e.Fields) > 0 {
		keys := make([]string, 0, len(e.Fields))
		for k := range e.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "; %s: %s", k, e.Fields[k])
		}
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// E builds an error with a code and a formatted message.
func E(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap builds an error with a code and a message around a cause.
func Wrap(code Code, err error, msg string) *Error {
	return &Error{Code: code, Message: msg, Err: err}
}

// Fields is a validation error collecting a message per field.
type Fields map[string]string

// Add records a problem with field; the first message per field wins.
func (f Fields) Add(field, format string, args ...any) {
	if _, ok := f[field]; !ok {
		f[field] = fmt.Sprintf(format, args...)
	}
}

// Err returns nil when no field has a problem, else an Invalid error.
func (f Fields) Err() error {
	if len(f) == 0 {
		return nil
	}
	return &Error{Code: Invalid, Message: "validation failed", Fields: f}
}

// Field returns an Invalid error about a single field.
func Field(field, format string, args ...any) *Error {
	return &Error{Code: Invalid, Message: "validation failed", Fields: map[string]string{field: fmt.Sprintf(format, args...)}}
}

// CodeOf returns the code of err, Internal when it carries none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Is reports whether err carries code.
func Is(err error, code Code) bool { return CodeOf(err) == code }

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
