package capture

import (
	"bytes"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/sqlws/sqlws/models"
)

// The Go side of the private value format (encode.go): row images and keys as SQLite
// wrote them become the JSON clients get.

var ldexpTag = []byte(`{"$ldexp":[`)

// AppendChange appends the protocol JSON record of one changelog row to dst, its key
// and images finished for clients (AppendRowJSON). pk is the key object (AppendKey);
// a nil or empty old or new is null.
func AppendChange(dst []byte, seq int64, table, op string, pk, old, new []byte, ts int64) []byte {
	return models.AppendChangeWith(dst, AppendRowJSON, seq, table, op, pk, old, new, ts)
}

// AppendRowJSON appends JSON written by SQLite (row images, keys) to dst, finished for
// clients: every {"$ldexp":[y,k]} — how the capture triggers write REALs other than
// small whole numbers, since old SQLite neither prints nor reads every double exactly
// — becomes the JSON number y·2^k, formatted as the shortest decimal that parses back
// to the same float64 (appendFloat); and invalid UTF-8 (SQLite copies TEXT bytes
// through unchecked) becomes U+FFFD, because browsers must drop a WebSocket whose
// text frame is not UTF-8. Anything else is copied.
func AppendRowJSON(dst, raw []byte) []byte {
	if !utf8.Valid(raw) {
		raw = bytes.ToValidUTF8(raw, []byte("\uFFFD"))
	}
	return ExpandReals(dst, raw)
}

// ExpandReals is AppendRowJSON without the UTF-8 repair, for JSON that goes back to
// SQLite (cursors, keys) rather than to a client.
func ExpandReals(dst, raw []byte) []byte {
	for {
		i := bytes.Index(raw, ldexpTag)
		if i < 0 {
			return append(dst, raw...)
		}
		dst = append(dst, raw[:i]...)
		rest := raw[i+len(ldexpTag):]
		end := bytes.Index(rest, []byte("]}"))
		if v, ok := parseLdexp(rest, end); ok {
			dst = appendFloat(dst, v)
			raw = rest[end+2:]
			continue
		}
		// Not our tag (e.g. a column named "$ldexp"): copy it through.
		dst = append(dst, ldexpTag...)
		raw = rest
	}
}

// appendFloat writes f as the shortest decimal that reads back as f, in the notation
// JavaScript and encoding/json use: plain from 1e-6 to 1e21, exponent outside
// (1234567.5, not 1.2345675e+06).
func appendFloat(dst []byte, f float64) []byte {
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		dst = strconv.AppendFloat(dst, f, 'e', -1, 64)
		// e-07 → e-7, as encoding/json writes it.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
		return dst
	}
	return strconv.AppendFloat(dst, f, 'f', -1, 64)
}

// parseLdexp reads the "y,k" of a tag whose remainder is rest, the tag's "]}" at end.
// It refuses what would not be a finite double, which is then not taken for a tag.
func parseLdexp(rest []byte, end int) (float64, bool) {
	if end < 0 {
		return 0, false
	}
	y, k, ok := bytes.Cut(rest[:end], []byte(","))
	if !ok {
		return 0, false
	}
	fy, err := strconv.ParseFloat(string(y), 64)
	if err != nil {
		return 0, false
	}
	fk, err := strconv.Atoi(string(k))
	if err != nil {
		return 0, false
	}
	v := math.Ldexp(fy, fk)
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}
