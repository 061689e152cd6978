package capture

import (
	"encoding/hex"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
)

// Reading finished row images (the JSON objects clients get as a change's old and
// new, after AppendRowJSON) back into values, for evaluating filters on the stream,
// and projecting them to the columns a subscriber selected.

var errBadImage = errors.New("row image is not a JSON object in the private value format")

// DecodeImage decodes a finished row image into column → value, each value one of
// nil, int64, float64, string or []byte: SQLite's five storage classes, as
// database/sql scans them. The JSON null image (no row) decodes to a nil map.
//
// The format (appendValue): an integer is a JSON integer literal, read exactly over
// the whole int64 range; a REAL is a number with '.', 'e' or 'E' (7.0, 1.5e-7), or
// {"$real":"Infinity"} / {"$real":"-Infinity"}; TEXT a JSON string; BLOB
// {"$blob":"HEX"}; NULL null.
//
// One caveat is the format's, not the decoder's: a whole REAL of magnitude 10^15 or
// more is written without a decimal point (1e15 as 1000000000000000, as JavaScript
// writes it), so it decodes as an int64 when it fits one. Its numeric value is exact
// either way; only its storage class is lost. Callers that know the column's affinity
// restore it where the affinity decides it (a REAL column holds no integers); see
// query.CompilePredicate.
//
// It is one pass over raw without reflection: every change a filtered subscription
// sees is decoded once (BenchmarkDecodeImage).
func DecodeImage(raw []byte) (map[string]any, error) {
	i := models.SkipJSONSpace(raw, 0)
	if hasWord(raw, i, "null") && models.SkipJSONSpace(raw, i+4) == len(raw) {
		return nil, nil
	}
	if i >= len(raw) || raw[i] != '{' {
		return nil, errBadImage
	}
	// Members are few; counting commas would cost a second pass, so guess.
	row := make(map[string]any, 8)
	i = models.SkipJSONSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		if models.SkipJSONSpace(raw, i+1) != len(raw) {
			return nil, errBadImage
		}
		return row, nil
	}
	for {
		name, j, ok := readString(raw, i)
		if !ok {
			return nil, errBadImage
		}
		j = models.SkipJSONSpace(raw, j)
		if j >= len(raw) || raw[j] != ':' {
			return nil, errBadImage
		}
		v, k, ok := readValue(raw, models.SkipJSONSpace(raw, j+1))
		if !ok {
			return nil, errBadImage
		}
		row[name] = v
		k = models.SkipJSONSpace(raw, k)
		if k >= len(raw) {
			return nil, errBadImage
		}
		switch raw[k] {
		case ',':
			i = models.SkipJSONSpace(raw, k+1)
		case '}':
			if models.SkipJSONSpace(raw, k+1) != len(raw) {
				return nil, errBadImage
			}
			return row, nil
		default:
			return nil, errBadImage
		}
	}
}

func hasWord(b []byte, i int, w string) bool {
	return len(b)-i >= len(w) && string(b[i:i+len(w)]) == w
}

// readValue reads the value at b[i] and returns it and the index after it.
func readValue(b []byte, i int) (any, int, bool) {
	if i >= len(b) {
		return nil, i, false
	}
	switch c := b[i]; {
	case c == '"':
		s, j, ok := readString(b, i)
		return s, j, ok
	case c == 'n':
		if hasWord(b, i, "null") {
			return nil, i + 4, true
		}
		return nil, i, false
	case c == '-' || (c >= '0' && c <= '9'):
		return readNumber(b, i)
	case c == '{':
		return readTagged(b, i)
	}
	return nil, i, false
}

// readNumber reads a JSON number: an integer literal as int64 (exactly, to the
// extremes of int64), anything else — and an integer beyond int64, which only a whole
// REAL is written as — as float64.
func readNumber(b []byte, i int) (any, int, bool) {
	start := i
	float := false
	for ; i < len(b); i++ {
		c := b[i]
		if c >= '0' && c <= '9' || c == '-' || c == '+' {
			continue
		}
		if c == '.' || c == 'e' || c == 'E' {
			float = true
			continue
		}
		break
	}
	lit := b[start:i]
	if !float {
		if n, ok := parseInt64(lit); ok {
			return n, i, true
		}
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return nil, i, false
	}
	return f, i, true
}

// parseInt64 parses an optionally negative decimal integer without leading '+',
// reporting false on overflow or a malformed literal.
func parseInt64(lit []byte) (int64, bool) {
	neg := len(lit) > 0 && lit[0] == '-'
	if neg {
		lit = lit[1:]
	}
	if len(lit) == 0 || len(lit) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range lit {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0') // 19 digits cannot overflow uint64
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true // -(1<<63) wraps to MinInt64, as wanted
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// readTagged reads {"$blob":"HEX"} or {"$real":"±Infinity"}.
func readTagged(b []byte, i int) (any, int, bool) {
	j := models.SkipJSONSpace(b, i+1)
	tag, j, ok := readString(b, j)
	if !ok {
		return nil, i, false
	}
	j = models.SkipJSONSpace(b, j)
	if j >= len(b) || b[j] != ':' {
		return nil, i, false
	}
	j = models.SkipJSONSpace(b, j+1)
	s, j, ok := readString(b, j)
	if !ok {
		return nil, i, false
	}
	j = models.SkipJSONSpace(b, j)
	if j >= len(b) || b[j] != '}' {
		return nil, i, false
	}
	j++
	text := s
	switch tag {
	case "$blob":
		v, err := hex.DecodeString(text)
		if err != nil {
			return nil, i, false
		}
		return v, j, true
	case "$real":
		switch text {
		case "Infinity":
			return math.Inf(1), j, true
		case "-Infinity":
			return math.Inf(-1), j, true
		}
	}
	return nil, i, false
}

// readString reads the JSON string at b[i] as a string.
func readString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", i, false
	}
	start := i + 1
	for j := start; j < len(b); j++ {
		switch b[j] {
		case '"':
			return string(b[start:j]), j + 1, true
		case '\\':
			return readEscaped(b, start)
		}
	}
	return "", i, false
}

// readEscaped reads a JSON string with escapes, starting after its opening quote.
func readEscaped(b []byte, start int) (string, int, bool) {
	out := make([]byte, 0, 32)
	for j := start; j < len(b); j++ {
		c := b[j]
		if c == '"' {
			return string(out), j + 1, true
		}
		if c != '\\' {
			out = append(out, c)
			continue
		}
		j++
		if j >= len(b) {
			return "", j, false
		}
		switch b[j] {
		case '"', '\\', '/':
			out = append(out, b[j])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(b, j+1)
			if !ok {
				return "", j, false
			}
			j += 4
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(b, j+3); ok && j+2 < len(b) && b[j+1] == '\\' && b[j+2] == 'u' {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						r = d
						j += 6
					}
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", j, false
		}
	}
	return "", len(b), false
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// ProjectImage appends to dst the row image raw (a finished JSON object) with only the
// members whose name keep accepts, in their order, each value copied byte for byte: a
// subscriber's select. A null image (no row) stays null. An image that is not a JSON
// object is appended unchanged, so a malformed record is passed on rather than lost.
func ProjectImage(dst, raw []byte, keep func(name string) bool) []byte {
	i := models.SkipJSONSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return append(dst, raw...)
	}
	start := len(dst)
	dst = append(dst, '{')
	n := 0
	i = models.SkipJSONSpace(raw, i+1)
	for i < len(raw) && raw[i] == '"' {
		nameStart := i
		name, j, ok := readString(raw, i)
		if !ok {
			break
		}
		j = models.SkipJSONSpace(raw, j)
		if j >= len(raw) || raw[j] != ':' {
			break
		}
		end, ok := models.SkipJSONValue(raw, models.SkipJSONSpace(raw, j+1))
		if !ok {
			break
		}
		if keep(name) {
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, raw[nameStart:end]...)
			n++
		}
		i = models.SkipJSONSpace(raw, end)
		if i < len(raw) && raw[i] == ',' {
			i = models.SkipJSONSpace(raw, i+1)
			continue
		}
		if i < len(raw) && raw[i] == '}' {
			return append(dst, '}')
		}
		break
	}
	if i < len(raw) && raw[i] == '}' && n == 0 {
		return append(dst, '}')
	}
	// Malformed: pass the image on as it is.
	return append(dst[:start], raw...)
}
