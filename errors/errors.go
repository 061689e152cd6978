// Package errors is sqlws's single error package. It classifies failures by Kind,
// and maps each Kind, in one place, to an HTTP status and a WebSocket error code, so
// every layer reports the same failure the same way and no internal error text ever
// reaches a client.
//
// It is a superset of the standard library's errors package (Is, As, New, Join,
// Unwrap are re-exported), so one import serves everywhere.
package errors

import (
	stderrors "errors"
	"fmt"
	"net/http"
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

var kindInfo = [...]struct {
	name   string
	status int
	code   string
}{
	Other:        {"other", http.StatusInternalServerError, "internal"},
	Invalid:      {"invalid", http.StatusBadRequest, "bad_request"},
	NotFound:     {"not_found", http.StatusNotFound, "not_found"},
	Conflict:     {"conflict", http.StatusConflict, "conflict"},
	Unauthorized: {"unauthorized", http.StatusUnauthorized, "unauthorized"},
	Forbidden:    {"forbidden", http.StatusForbidden, "forbidden"},
	TooLarge:     {"too_large", http.StatusRequestEntityTooLarge, "too_large"},
	RateLimited:  {"rate_limited", http.StatusTooManyRequests, "rate_limited"},
	Unavailable:  {"unavailable", http.StatusServiceUnavailable, "unavailable"},
	Internal:     {"internal", http.StatusInternalServerError, "internal"},
	Unsupported:  {"unsupported_media_type", http.StatusUnsupportedMediaType, "unsupported_media_type"},
}

func (k Kind) String() string {
	if int(k) < len(kindInfo) {
		return kindInfo[k].name
	}
	return "other"
}

// HTTPStatus is the HTTP status that reports an error of kind k.
func (k Kind) HTTPStatus() int {
	if int(k) < len(kindInfo) {
		return kindInfo[k].status
	}
	return http.StatusInternalServerError
}

// Code is the default stable error code (REST and WebSocket) for kind k.
func (k Kind) Code() string {
	if int(k) < len(kindInfo) {
		return kindInfo[k].code
	}
	return "internal"
}

// Error is a classified error. Msg is safe to show to clients; Err is the cause and
// is only logged.
type Error struct {
	Op   string // the operation, e.g. "subscribe" or "create row"
	Kind Kind
	Code string // a specific stable code (e.g. "unknown_table"); empty means Kind.Code()
	Msg  string // client-safe message
	Err  error  // underlying cause, never shown to clients
}

// E builds an *Error from its arguments, in the spirit of upspin's errors.E: a Kind,
// a string (the client-safe message), an error (the cause) and Op values may appear in
// any order. Use Op("name") to set the operation and Code("x") for a specific code.
func E(args ...any) error {
	e := &Error{}
	for _, a := range args {
		switch a := a.(type) {
		case Kind:
			e.Kind = a
		case Op:
			e.Op = string(a)
		case Code:
			e.Code = string(a)
		case string:
			e.Msg = a
		case *Error:
			cp := *a
			e.Err = &cp
		case error:
			e.Err = a
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

// Code is a specific, stable error code for clients.
type Code string

// Errorf returns an error of kind k whose formatted text is also the client message.
func Errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// WithCode is Errorf with a specific code.
func WithCode(k Kind, code, format string, args ...any) error {
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

// Public returns what a client may see of err: its HTTP status, stable code and a
// message. Unclassified and internal errors become a generic message, so no internal
// text leaks. The code is the first specific Code in the chain that belongs to err's
// Kind; the message is the first client-safe message in the chain.
func Public(err error) (status int, code, msg string) {
	k := KindOf(err)
	if k == Other || k == Internal {
		return http.StatusInternalServerError, "internal", "internal error"
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
	return k.HTTPStatus(), code, msg
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
