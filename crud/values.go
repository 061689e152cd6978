package crud

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/sqlws/sqlws/errors"
)

// Values is a row body decoded for binding: column name → int64, float64, string,
// []byte or nil.
type Values map[string]any

func badJSON(format string, args ...any) error {
	return errors.WithCode(errors.Invalid, errors.CodeBadJSON, format, args...)
}

// DecodeRow decodes a request body, a JSON object {column: value}, for binding. Values:
// a number binds as INTEGER when it is an integer within int64, otherwise as REAL;
// strings as TEXT; true/false as 1/0; null as NULL; {"$blob":"hex"} as a BLOB;
// {"$real":"Infinity"} / {"$real":"-Infinity"} as ±infinity; any other object or array
// as its JSON text.
func DecodeRow(data []byte) (Values, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, badJSON("empty body: want a JSON object")
	}
	if err != nil {
		return nil, badJSON("malformed JSON: %s", jsonErrText(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, badJSON("the body must be a JSON object")
	}
	vals := Values{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, badJSON("malformed JSON: %s", jsonErrText(err))
		}
		name, ok := tok.(string)
		if !ok {
			return nil, badJSON("malformed JSON object")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, badJSON("malformed JSON: %s", jsonErrText(err))
		}
		v, err := decodeValue(raw, false)
		if err != nil {
			return nil, errors.WithCode(errors.Invalid, errors.CodeBadValue, "column %q: %s", errors.Clip(name), err.Error())
		}
		vals[name] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, badJSON("malformed JSON: %s", jsonErrText(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badJSON("unexpected data after the JSON object")
	}
	return vals, nil
}

// jsonErrText is encoding/json's description of a syntax error, which names only the
// offending character, never server state.
func jsonErrText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return se.Error()
	}
	if err == io.ErrUnexpectedEOF {
		return "unexpected end of JSON input"
	}
	return "invalid JSON"
}

// decodeValue decodes one JSON value for binding (see DecodeRow). strict accepts only
// what valueExpr produces: null, numbers, strings and the tagged objects.
func decodeValue(raw json.RawMessage, strict bool) (any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errors.New("empty value")
	}
	switch raw[0] {
	case 'n':
		return nil, nil
	case 't', 'f':
		if strict {
			return nil, errors.New("unexpected boolean")
		}
		if raw[0] == 't' {
			return int64(1), nil
		}
		return int64(0), nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return s, nil
	case '{':
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
		if len(m) == 1 {
			if h, ok := m["$blob"]; ok {
				var s string
				if err := json.Unmarshal(h, &s); err != nil {
					return nil, errors.New(`$blob wants a string of hex digits`)
				}
				b, err := hex.DecodeString(s)
				if err != nil {
					return nil, errors.New(`$blob wants a string of hex digits`)
				}
				return b, nil
			}
			if r, ok := m["$real"]; ok {
				var s string
				json.Unmarshal(r, &s)
				switch s {
				case "Infinity", "+Infinity":
					return math.Inf(1), nil
				case "-Infinity":
					return math.Inf(-1), nil
				}
				return nil, errors.New(`$real wants "Infinity" or "-Infinity"`)
			}
		}
		if strict {
			return nil, errors.New("unexpected object")
		}
		return compactJSON(raw)
	case '[':
		if strict {
			return nil, errors.New("unexpected array")
		}
		return compactJSON(raw)
	}
	s := string(raw)
	if !strings.ContainsAny(s, ".eE") {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange && !math.IsInf(f, 0) {
			return f, nil // underflow rounds to ±0, as SQLite does
		}
		return nil, fmt.Errorf("number %s is out of the float64 range", errors.Clip(s))
	}
	return f, nil
}

func compactJSON(raw []byte) (any, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	return buf.String(), nil
}

// decodeArray decodes a JSON array of n encoded values (as valueExpr writes them) into
// bind parameters.
func decodeArray(raw []byte, n int) ([]any, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	if len(items) != n {
		return nil, fmt.Errorf("want %d values, got %d", n, len(items))
	}
	out := make([]any, n)
	for i, it := range items {
		v, err := decodeValue(it, true)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}
