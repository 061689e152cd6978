// Package errors is sqlws's single error package. It classifies failures by Kind
// (what the caller can do about it), names the stable error codes clients see, and
// separates the client-safe message from the cause, so every layer reports a failure
// the same way and no internal error text ever reaches a client. How a Kind shows at
// an edge (an HTTP status, a WebSocket close) is the edge's business: package web
// and package ws each map kinds in one place.
//
// It is a superset of the standard library's errors package (Is, As, New, Join,
// Unwrap are re-exported), so one import serves everywhere.
package errors

import (
	stderrors "errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Kind classifies an error by what the caller can do about it.
type Kind uint8

// Kinds, from the caller's point of view.
const (
	Other        Kind = iota // unclassified; treated as Internal at the edge
	Invalid                  // the request is malformed or breaks a rule
	NotFound                 // the named table, row or subscription does not exist
	Conflict                 // a constraint (UNIQUE, NOT NULL, CHECK, FOREIGN KEY) refused the write
	Unauthorized             // no or bad credentials
	Forbidden                // credentials lack the right
	TooLarge                 // the body or message exceeds its limit
	RateLimited              // too many requests
	Unavailable              // the database is busy or closed; retry later
	Internal                 // a fault in sqlws itself
	Unsupported              // the request's media type is not JSON
)

// Code is a specific, stable error code for clients (docs/rest.md, docs/protocol.md).
type Code string

// The error codes. Each Kind has a default (Kind.Code); the others are more specific
// codes of a kind, set with E(..., CodeX) or WithCode.
const (
	CodeInternal             Code = "internal"
	CodeBadRequest           Code = "bad_request"
	CodeNotFound             Code = "not_found"
	CodeConflict             Code = "conflict"
	CodeUnauthorized         Code = "unauthorized"
	CodeForbidden            Code = "forbidden"
	CodeTooLarge             Code = "too_large"
	CodeRateLimited          Code = "rate_limited"
	CodeUnavailable          Code = "unavailable"
	CodeUnsupportedMediaType Code = "unsupported_media_type"

	CodeUnknownTable        Code = "unknown_table"        // NotFound: no tracked table of that name
	CodeUnknownColumn       Code = "unknown_column"       // Invalid: no column of that name
	CodeUnknownSubscription Code = "unknown_subscription" // NotFound: unsubscribe of an inactive id
	CodeDuplicateID         Code = "duplicate_id"         // Conflict: subscribe with an active id
	CodeTableDropped        Code = "table_dropped"        // a subscribed table was dropped
	CodeBadFilter           Code = "bad_filter"           // Invalid
	CodeBadSelect           Code = "bad_select"           // Invalid
	CodeBadOrder            Code = "bad_order"            // Invalid
	CodeBadLimit            Code = "bad_limit"            // Invalid
	CodeBadCursor           Code = "bad_cursor"           // Invalid
	CodeBadKey              Code = "bad_key"              // Invalid
	CodeBadJSON             Code = "bad_json"             // Invalid
	CodeBadValue            Code = "bad_value"            // Invalid
	CodeWrongType           Code = "wrong_type"           // Invalid
	CodeGeneratedColumn     Code = "generated_column"     // Invalid
	CodeMethodNotAllowed    Code = "method_not_allowed"
	CodeReadOnly            Code = "read_only"              // Unavailable: the server cannot write the database
	CodeCapturePaused       Code = "capture_paused"         // Unavailable: capture of the table is paused for a schema change
	CodeNotCapturable       Code = "not_capturable"         // Invalid: the table cannot be captured
	CodeNotCaptured         Code = "not_captured"           // Invalid: pause of a table sqlws does not capture
	CodeNotPaused           Code = "not_paused"             // Invalid: resume of a table whose capture is not paused
	CodeTokenExpired        Code = "token_expired"          // Unauthorized: a WebSocket's token expired (close 4001 follows)
	CodeTooManySubs         Code = "too_many_subscriptions" // TooLarge: a connection's subscription limit
	CodeHostNotAllowed      Code = "host_not_allowed"       // Forbidden: the Host header names no host this server answers for (DNS rebinding)

	// Conflict: a constraint refused a write (docs/rest.md, Errors).
	CodeUniqueViolation     Code = "unique_violation"
	CodePrimaryKeyViolation Code = "primary_key_violation"
	CodeNotNullViolation    Code = "not_null_violation"
	CodeCheckViolation      Code = "check_violation"
	CodeForeignKeyViolation Code = "foreign_key_violation"
	CodeTriggerViolation    Code = "trigger_violation" // a trigger's RAISE(ABORT, …)
	CodeConstraintViolation Code = "constraint_violation"
)

var kindInfo = [...]struct {
	name string
	code Code
}{
	Other:        {"other", CodeInternal},
	Invalid:      {"invalid", CodeBadRequest},
	NotFound:     {"not_found", CodeNotFound},
	Conflict:     {"conflict", CodeConflict},
	Unauthorized: {"unauthorized", CodeUnauthorized},
	Forbidden:    {"forbidden", CodeForbidden},
	TooLarge:     {"too_large", CodeTooLarge},
	RateLimited:  {"rate_limited", CodeRateLimited},
	Unavailable:  {"unavailable", CodeUnavailable},
	Internal:     {"internal", CodeInternal},
	Unsupported:  {"unsupported_media_type", CodeUnsupportedMediaType},
}

func (k Kind) String() string {
	if int(k) < len(kindInfo) {
		return kindInfo[k].name
	}
	return "other"
}

// Code is the default error code for kind k.
func (k Kind) Code() Code {
	if int(k) < len(kindInfo) {
		return kindInfo[k].code
	}
	return CodeInternal
}

// Error is a classified error. Msg is safe to show to clients; Err is the cause and
// is only logged.
type Error struct {
	Op   string // the operation, e.g. "subscribe" or "create row"
	Kind Kind
	Code Code   // a specific stable code (e.g. CodeUnknownTable); empty means Kind.Code()
	Msg  string // client-safe message
	Err  error  // underlying cause, never shown to clients
}

// E builds an *Error from its arguments, in the spirit of upspin's errors.E: a Kind,
// a string (the client-safe message), an error (the cause), an Op and a Code may
// appear in any order. An argument of any other type is a programming error: E then
// returns an Internal error that names it, rather than drop it unnoticed.
func E(args ...any) error {
	e := &Error{}
	for _, a := range args {
		switch a := a.(type) {
		case Kind:
			e.Kind = a
		case Op:
			e.Op = string(a)
		case Code:
			e.Code = a
		case string:
			e.Msg = a
		case *Error:
			cp := *a
			e.Err = &cp
		case error:
			e.Err = a
		case nil:
			// A nil cause: nothing to record.
		default:
			return &Error{Kind: Internal, Err: fmt.Errorf("errors.E: bad call: unknown argument of type %T (%v)", a, a)}
		}
	}
	if e.Kind == Other {
		var inner *Error
		if stderrors.As(e.Err, &inner) {
			e.Kind = inner.Kind
			if e.Code == "" {
				e.Code = inner.Code
			}
			if e.Msg == "" {
				e.Msg = inner.Msg
			}
		}
	}
	return e
}

// Op names the operation an error happened in.
type Op string

// Errorf returns an error of kind k whose formatted text is also the client message.
func Errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// WithCode is Errorf with a specific code.
func WithCode(k Kind, code Code, format string, args ...any) error {
	return &Error{Kind: k, Code: code, Msg: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
	}
	if e.Msg != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Msg)
	}
	if e.Err != nil {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	if b.Len() == 0 {
		return e.Kind.String()
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf reports the Kind of the outermost classified error in err's chain, Internal
// for an unclassified error, and Other for nil.
func KindOf(err error) Kind {
	if err == nil {
		return Other
	}
	var e *Error
	for stderrors.As(err, &e) {
		if e.Kind != Other {
			return e.Kind
		}
		err = e.Err
		if err == nil {
			break
		}
	}
	return Internal
}

// IsKind reports whether err is classified as kind k.
func IsKind(err error, k Kind) bool { return err != nil && KindOf(err) == k }

// Public returns what a client may see of err: its kind, stable code and a message.
// Unclassified and internal errors become Internal with a generic message, so no
// internal text leaks. The code is the first specific Code in the chain that belongs
// to err's Kind; the message is the first client-safe message in the chain.
func Public(err error) (kind Kind, code Code, msg string) {
	k := KindOf(err)
	if k == Other || k == Internal {
		return Internal, CodeInternal, "internal error"
	}
	code = k.Code()
	for e := err; e != nil; {
		var ce *Error
		if !stderrors.As(e, &ce) {
			break
		}
		if ce.Code != "" && (ce.Kind == k || ce.Kind == Other) {
			code = ce.Code
			break
		}
		e = ce.Err
	}
	msg = message(err)
	if msg == "" {
		msg = k.String()
	}
	return k, code, msg
}

// message returns the first client-safe message in err's chain.
func message(err error) string {
	for err != nil {
		var e *Error
		if !stderrors.As(err, &e) {
			return ""
		}
		if e.Msg != "" {
			return e.Msg
		}
		err = e.Err
	}
	return ""
}

// ClipLen is how many bytes of a client-supplied name or value Clip keeps.
const ClipLen = 128

// Clip shortens a client-supplied string (a table or column name, a filter operator,
// a path) for an error message: at most ClipLen bytes, cut on a rune boundary, then
// "…". An error body that echoed a 900 KB name whole would cost the server memory
// and bandwidth for nothing the client does not already have.
func Clip(s string) string {
	if len(s) <= ClipLen {
		return s
	}
	n := ClipLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Re-exports of the standard library, so callers need one errors import.
var (
	New    = stderrors.New
	Is     = stderrors.Is
	As     = stderrors.As
	Join   = stderrors.Join
	Unwrap = stderrors.Unwrap
)

// ErrUnsupported is the standard library's errors.ErrUnsupported.
var ErrUnsupported = stderrors.ErrUnsupported
