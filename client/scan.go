package client

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

// The frame scanner. A subscriber that is behind receives frames of up to a thousand
// records, and the load generator pushes a million records a second through one
// process, so decoding every record with encoding/json (a map or struct per record,
// a string per field) would cost more than the server spends producing them. The
// scanner instead walks each frame once: it validates the JSON syntax completely
// (so a Change's Raw is always valid JSON and Decode cannot meet a surprise), picks
// out seq, table and op, and records where each record starts and ends. It does not
// trust the server's key order or formatting; malformed input is an error, never a
// panic (FuzzParseFrame).

// maxDepth bounds nesting inside a frame, as encoding/json does, so hostile input
// cannot run the recursive skip out of stack.
const maxDepth = 10000

// frameInfo is what parseFrame found at the top level of one message.
type frameInfo struct {
	typ        string // the "type" value: a models.Type* constant, or "" when unknown or absent
	id         []byte // raw JSON of "id", nil when absent
	hasChanges bool   // a "changes" array was present (its records were appended)
}

// syntaxError reports malformed server input. Only the error path allocates.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("sqlws client: malformed frame at byte %d: %s", e.off, e.msg)
}

func errAt(off int, msg string) error { return &syntaxError{off: off, msg: msg} }

// parseFrame scans one server message b, appends the records of its "changes" array
// (if any) to dst and returns the top-level type and id. The records' Raw fields are
// sub-slices of b. On error dst is returned as it was given.
func parseFrame(dst []Change, b []byte, in *interner) (frameInfo, []Change, error) {
	var f frameInfo
	base := len(dst)
	fail := func(err error) (frameInfo, []Change, error) { return frameInfo{}, dst[:base], err }
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return fail(errAt(i, "a frame must be a JSON object"))
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			key, next, err := scanKey(b, i)
			if err != nil {
				return fail(err)
			}
			i = next
			switch string(key) {
			case "type":
				if i >= len(b) || b[i] != '"' {
					return fail(errAt(i, `"type" must be a string`))
				}
				s, end, err := scanStringValue(b, i, in)
				if err != nil {
					return fail(err)
				}
				f.typ, i = messageType(s), end
			case "id":
				end, err := skipValue(b, i, 1)
				if err != nil {
					return fail(err)
				}
				f.id, i = b[i:end], end
			case "changes":
				if i < len(b) && b[i] == '[' {
					// A repeated key replaces the earlier value, as in encoding/json.
					dst = dst[:base]
					dst, i, err = parseChanges(dst, b, i, in)
					if err != nil {
						return fail(err)
					}
					f.hasChanges = true
					break
				}
				end, err := skipValue(b, i, 1)
				if err != nil {
					return fail(err)
				}
				dst, i, f.hasChanges = dst[:base], end, false
			default:
				end, err := skipValue(b, i, 1)
				if err != nil {
					return fail(err)
				}
				i = end
			}
			i = skipWS(b, i)
			if i < len(b) && b[i] == ',' {
				i = skipWS(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return fail(errAt(i, "expected , or } after an object member"))
		}
	}
	if i = skipWS(b, i); i != len(b) {
		return fail(errAt(i, "data after the frame's JSON object"))
	}
	return f, dst, nil
}

func messageType(s string) string {
	switch s {
	case protocol.TypeHello, protocol.TypeSubscribed, protocol.TypeChanges, protocol.TypeReset,
		protocol.TypeUnsubscribed, protocol.TypeError:
		return s
	}
	return ""
}

// parseChanges parses the array at b[i] ('[') of change records, appending them to
// dst, and returns the index after the array.
func parseChanges(dst []Change, b []byte, i int, in *interner) ([]Change, int, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return dst, i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '{' {
			return dst, i, errAt(i, "a change record must be a JSON object")
		}
		c, end, err := parseRecord(b, i, in)
		if err != nil {
			return dst, i, err
		}
		dst = append(dst, c)
		i = skipWS(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < len(b) && b[i] == ']' {
			return dst, i + 1, nil
		}
		return dst, i, errAt(i, `expected , or ] in "changes"`)
	}
}

// parseRecord parses the change record object at b[i] ('{').
func parseRecord(b []byte, i int, in *interner) (Change, int, error) {
	start := i
	var c Change
	var haveSeq, haveTable, haveOp bool
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return c, i, errAt(start, "a change record without seq")
	}
	for {
		key, next, err := scanKey(b, i)
		if err != nil {
			return c, i, err
		}
		i = next
		switch string(key) {
		case "seq":
			c.Seq, i, err = scanSeq(b, i)
			haveSeq = true
		case "table":
			if i >= len(b) || b[i] != '"' {
				return c, i, errAt(i, `"table" must be a string`)
			}
			c.Table, i, err = scanStringValue(b, i, in)
			haveTable = true
		case "op":
			if i >= len(b) || b[i] != '"' {
				return c, i, errAt(i, `"op" must be a string`)
			}
			c.Op, i, err = scanStringValue(b, i, in)
			haveOp = true
		default:
			i, err = skipValue(b, i, 2)
		}
		if err != nil {
			return c, i, err
		}
		i = skipWS(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			i++
			break
		}
		return c, i, errAt(i, "expected , or } in a change record")
	}
	if !haveSeq || !haveTable || !haveOp {
		return c, i, errAt(start, "a change record needs seq, table and op")
	}
	c.Raw = b[start:i:i]
	return c, i, nil
}

// decodeRecord reads pk, old, new and ts from a record parseRecord accepted. It
// walks the record with the scanner rather than encoding/json, whose
// case-insensitive key matching would read a column-like key such as "TS" into
// the wrong field.
func decodeRecord(b []byte) (models.Change, error) {
	var m models.Change
	var pk, old, new []byte
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return m, errAt(i, "a change record must be a JSON object")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			key, next, err := scanKey(b, i)
			if err != nil {
				return m, err
			}
			i = next
			end, err := skipValue(b, i, 2)
			if err != nil {
				return m, err
			}
			switch string(key) {
			case "pk":
				pk = b[i:end]
			case "old":
				old = b[i:end]
			case "new":
				new = b[i:end]
			case "ts":
				if m.TS, err = parseInt(b[i:end]); err != nil {
					return m, errAt(i, "ts must be an integer")
				}
			}
			i = skipWS(b, end)
			if i < len(b) && b[i] == ',' {
				i = skipWS(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return m, errAt(i, "expected , or } in a change record")
		}
	}
	if i = skipWS(b, i); i != len(b) {
		return m, errAt(i, "data after the change record")
	}
	buf := make([]byte, 0, len(pk)+len(old)+len(new))
	take := func(v []byte) json.RawMessage {
		if v == nil {
			return nil
		}
		n := len(buf)
		buf = append(buf, v...)
		return buf[n:len(buf):len(buf)]
	}
	m.PK, m.Old, m.New = take(pk), take(old), take(new)
	return m, nil
}

// parseInt parses a JSON integer (or null, as 0) without allocating.
func parseInt(b []byte) (int64, error) {
	if string(b) == "null" {
		return 0, nil
	}
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, errAt(0, "not an int64")
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errAt(0, "not an integer")
		}
		v = v*10 + uint64(c-'0')
	}
	switch {
	case neg && v <= 1<<63:
		return -int64(v), nil // 1<<63 wraps to the minimum, as it should
	case !neg && v < 1<<63:
		return int64(v), nil
	}
	return 0, errAt(0, "not an int64")
}

// scanSeq parses the integer at b[i]: a seq is a non-negative int64 written without
// fraction or exponent.
func scanSeq(b []byte, i int) (int64, int, error) {
	start := i
	var v int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		d := int64(b[i] - '0')
		if v > (1<<63-1-d)/10 {
			return 0, start, errAt(start, "seq out of range")
		}
		v = v*10 + d
		i++
	}
	switch {
	case i == start:
		return 0, start, errAt(start, "seq must be a non-negative integer")
	case b[start] == '0' && i-start > 1:
		return 0, start, errAt(start, "number with a leading zero")
	case i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E'):
		return 0, start, errAt(start, "seq must be an integer")
	}
	return v, i, nil
}

// scanKey parses an object key and the colon after it at b[i], returning the key's
// text (unescaped if needed) and the index of the value.
func scanKey(b []byte, i int) ([]byte, int, error) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, errAt(i, "expected a string key")
	}
	end, flags, err := scanString(b, i)
	if err != nil {
		return nil, i, err
	}
	key := b[i+1 : end-1]
	if flags&strEscape != 0 {
		key = []byte(unquote(b[i:end]))
	}
	i = skipWS(b, end)
	if i >= len(b) || b[i] != ':' {
		return nil, i, errAt(i, "expected : after an object key")
	}
	return key, skipWS(b, i+1), nil
}

// scanStringValue parses the string at b[i] and returns it interned: table names and
// ops repeat in every record, so after the first sighting they cost no allocation.
func scanStringValue(b []byte, i int, in *interner) (string, int, error) {
	end, flags, err := scanString(b, i)
	if err != nil {
		return "", i, err
	}
	raw := b[i+1 : end-1]
	if flags&strEscape != 0 || (flags&strHigh != 0 && !utf8.Valid(raw)) {
		// Escapes, or bytes that encoding/json would replace with U+FFFD: decode
		// exactly as Decode would.
		return in.intern([]byte(unquote(b[i:end]))), end, nil
	}
	switch string(raw) {
	case models.OpInsert:
		return models.OpInsert, end, nil
	case models.OpUpdate:
		return models.OpUpdate, end, nil
	case models.OpDelete:
		return models.OpDelete, end, nil
	}
	return in.intern(raw), end, nil
}

// unquote decodes a JSON string literal already validated by scanString.
func unquote(lit []byte) string {
	var s string
	if err := json.Unmarshal(lit, &s); err != nil {
		// Unreachable: scanString accepts only what encoding/json accepts.
		return string(lit)
	}
	return s
}

// Character classes inside a string literal.
const (
	chPlain = iota
	chHigh  // a byte of a multi-byte UTF-8 sequence
	chQuote
	chBackslash
	chControl
)

var strClass = func() (t [256]uint8) {
	for c := range 0x20 {
		t[c] = chControl
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] = chHigh
	}
	t['"'] = chQuote
	t['\\'] = chBackslash
	return t
}()

// String flags.
const (
	strEscape = 1 << iota // contains a backslash escape
	strHigh               // contains bytes >= 0x80
)

// scanString validates the string literal at b[i] ('"') and returns the index after
// its closing quote.
func scanString(b []byte, i int) (int, uint8, error) {
	start := i
	var flags uint8
	i++
	for {
		for i < len(b) && strClass[b[i]] == chPlain {
			i++
		}
		if i >= len(b) {
			return 0, 0, errAt(start, "unterminated string")
		}
		switch strClass[b[i]] {
		case chQuote:
			return i + 1, flags, nil
		case chHigh:
			flags |= strHigh
			i++
		case chControl:
			return 0, 0, errAt(i, "control character in a string")
		case chBackslash:
			flags |= strEscape
			if i+1 >= len(b) {
				return 0, 0, errAt(start, "unterminated string")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return 0, 0, errAt(i, `bad \u escape`)
				}
				i += 6
			default:
				return 0, 0, errAt(i, "bad escape")
			}
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// skipValue validates the JSON value at b[i] and returns the index after it. depth
// is the nesting level of the value.
func skipValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return i, errAt(i, "unexpected end of frame")
	}
	switch c := b[i]; {
	case c == '"':
		end, _, err := scanString(b, i)
		return end, err
	case c == '{':
		return skipObject(b, i, depth+1)
	case c == '[':
		return skipArray(b, i, depth+1)
	case c == '-' || c >= '0' && c <= '9':
		return scanNumber(b, i)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	}
	return i, errAt(i, "expected a JSON value")
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, errAt(i, "expected a JSON value")
	}
	return i + len(lit), nil
}

func skipObject(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return i, errAt(i, "nested too deeply")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, errAt(i, "expected a string key")
		}
		end, _, err := scanString(b, i)
		if err != nil {
			return i, err
		}
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return i, errAt(i, "expected : after an object key")
		}
		if i, err = skipValue(b, skipWS(b, i+1), depth); err != nil {
			return i, err
		}
		i = skipWS(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		return i, errAt(i, "expected , or } after an object member")
	}
}

func skipArray(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return i, errAt(i, "nested too deeply")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = skipValue(b, i, depth); err != nil {
			return i, err
		}
		i = skipWS(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		return i, errAt(i, "expected , or ] after an array element")
	}
}

// scanNumber validates the JSON number at b[i].
func scanNumber(b []byte, i int) (int, error) {
	start := i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return start, errAt(start, "bad number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return start, errAt(start, "bad number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return start, errAt(start, "bad number")
		}
	}
	return i, nil
}

// maxInterned bounds the interner, so a server inventing a new table name per record
// cannot grow it without limit; past it, names are allocated per record.
const maxInterned = 4096

// interner maps the bytes of a table name (or an op) to one shared string. It is
// used by one goroutine at a time (the connection's reader).
type interner struct{ m map[string]string }

func (in *interner) intern(b []byte) string {
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if in.m == nil {
		in.m = make(map[string]string)
	}
	if len(in.m) < maxInterned {
		in.m[s] = s
	}
	return s
}

// appendSubscribe appends a subscribe message. Hand-built rather than marshalled, so
// that the since and stream a resume sends are obviously the ones given.
func appendSubscribe(dst []byte, idJSON string, tables []string, since int64, hasSince bool, stream, where, sel string) []byte {
	dst = append(dst, `{"type":"subscribe","id":`...)
	dst = append(dst, idJSON...)
	if len(tables) > 0 {
		dst = append(dst, `,"tables":[`...)
		for i, t := range tables {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = models.AppendJSONString(dst, t)
		}
		dst = append(dst, ']')
	}
	if hasSince {
		dst = append(dst, `,"since":`...)
		dst = strconv.AppendInt(dst, since, 10)
	}
	if stream != "" {
		dst = append(dst, `,"stream":`...)
		dst = models.AppendJSONString(dst, stream)
	}
	if where != "" {
		dst = append(dst, `,"where":`...)
		dst = models.AppendJSONString(dst, where)
	}
	if sel != "" {
		dst = append(dst, `,"select":`...)
		dst = models.AppendJSONString(dst, sel)
	}
	return append(dst, '}')
}
