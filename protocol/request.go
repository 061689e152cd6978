package protocol

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/sqlws/sqlws/errors"
)

// Bounds on what one request may ask a server to hold or echo.
const (
	MaxIDBytes    = 256  // a subscription id is echoed on every reply: keep it short
	MaxTableNames = 1000 // tables in one subscription
)

// Request is a parsed, validated client message.
type Request struct {
	Type string
	// ID is the subscription id's canonical JSON text: a string re-encoded (so "a"
	// and "\u0061" are one id) or an integer as sent. It is what replies echo.
	ID json.RawMessage
	// Subscribe's fields.
	Tables   []string // nil: every table
	Since    int64
	HasSince bool
	Stream   string
	// Where and Select narrow a subscription of one table to rows and columns, in
	// REST's list grammar (package query parses them; docs/protocol.md). "": absent.
	Where  string
	Select string
	// Token is auth's new token.
	Token string
}

// MaxFilterBytes bounds where and select: they are parsed and kept for the life of
// the subscription.
const MaxFilterBytes = 16 << 10

// Parse parses and validates one client message. On error, the returned Request
// still carries the id when it could be read, so the error reply can echo it.
func Parse(data []byte) (Request, error) {
	var r Request
	var m ClientMessage
	if err := json.Unmarshal(data, &m); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return r, errors.Errorf(errors.Invalid, "field %q has the wrong type", te.Field)
		case errors.As(err, &te):
			return r, errors.E(errors.Invalid, "a message must be a JSON object")
		}
		return r, errors.E(errors.Invalid, "malformed JSON message")
	}
	r.Type = m.Type
	id, idErr := parseID(m.ID)
	r.ID = id
	switch m.Type {
	case TypeSubscribe, TypeUnsubscribe:
		if idErr != nil {
			return r, idErr
		}
	case TypeAuth:
		if err := json.Unmarshal(m.Token, &r.Token); err != nil || r.Token == "" {
			return r, errors.E(errors.Invalid, `auth needs "token", a non-empty string`)
		}
		return r, nil
	case "":
		return r, errors.E(errors.Invalid, `missing "type"`)
	default:
		return r, errors.Errorf(errors.Invalid, "unknown message type %q", errors.Clip(m.Type))
	}
	if m.Type == TypeUnsubscribe {
		return r, nil
	}
	if present(m.Tables) {
		if err := json.Unmarshal(m.Tables, &r.Tables); err != nil {
			return r, errors.E(errors.Invalid, `"tables" must be an array of table names`)
		}
		if len(r.Tables) > MaxTableNames {
			return r, errors.Errorf(errors.Invalid, `"tables" names more than %d tables`, MaxTableNames)
		}
		if len(r.Tables) == 0 {
			r.Tables = nil
		}
	}
	if present(m.Stream) {
		if err := json.Unmarshal(m.Stream, &r.Stream); err != nil {
			return r, errors.E(errors.Invalid, `"stream" must be a string`)
		}
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *string
	}{{"where", m.Where, &r.Where}, {"select", m.Select, &r.Select}} {
		if !present(f.raw) {
			continue
		}
		if err := json.Unmarshal(f.raw, f.dst); err != nil {
			return r, errors.Errorf(errors.Invalid, "%q must be a string", f.name)
		}
		if len(*f.dst) > MaxFilterBytes {
			return r, errors.Errorf(errors.Invalid, "%q is longer than %d bytes", f.name, MaxFilterBytes)
		}
	}
	if (r.Where != "" || r.Select != "") && len(r.Tables) != 1 {
		return r, errors.E(errors.Invalid, `"where" and "select" need "tables" naming exactly one table`)
	}
	if present(m.Since) {
		v, err := strconv.ParseInt(string(bytes.TrimSpace(m.Since)), 10, 64)
		if err != nil || v < 0 {
			return r, errors.E(errors.Invalid, `"since" must be an integer >= 0`)
		}
		r.Since, r.HasSince = v, true
	}
	return r, nil
}

func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// parseID accepts a JSON string or an integer and returns its canonical JSON text.
// Numbers must be plain integers: anything else (1.5, 1e400) has no single canonical
// text to echo back.
func parseID(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.E(errors.Invalid, `missing "id"`)
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, errors.E(errors.Invalid, `"id" must be a string or an integer`)
		}
		out, _ := json.Marshal(s)
		if len(out) > MaxIDBytes {
			return nil, errors.Errorf(errors.Invalid, `"id" is longer than %d bytes`, MaxIDBytes)
		}
		return out, nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if len(raw) > MaxIDBytes {
			return nil, errors.Errorf(errors.Invalid, `"id" is longer than %d bytes`, MaxIDBytes)
		}
		digits := raw
		if digits[0] == '-' {
			digits = digits[1:]
		}
		if len(digits) == 0 || bytes.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
			return nil, errors.E(errors.Invalid, `"id" must be a string or an integer`)
		}
		return raw, nil
	}
	return nil, errors.E(errors.Invalid, `"id" must be a string or an integer`)
}
