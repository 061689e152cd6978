// Package models holds the types every sqlws package shares: change records, stream
// positions and table schemas. It imports nothing of sqlws's own, so any package can
// depend on it without cycles.
package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
)

// Operation names, as they appear in change records.
const (
	OpInsert = "insert"
	OpUpdate = "update"
	OpDelete = "delete"
)

// Change is one decoded change record. Row images stay raw JSON so that int64 values
// and the BLOB encoding survive untouched.
type Change struct {
	Seq   int64           `json:"seq"`
	Table string          `json:"table"`
	Op    string          `json:"op"`
	PK    json.RawMessage `json:"pk"`
	Old   json.RawMessage `json:"old"`
	New   json.RawMessage `json:"new"`
	TS    int64           `json:"ts"`
}

// Encoded is a change record already encoded as its protocol JSON object. The fan-out
// keeps changes in this form so each change is encoded once, however many subscribers
// receive it.
type Encoded struct {
	Seq   int64
	Table string
	JSON  []byte
}

// AppendChange appends the protocol JSON object of one change to dst. pk, old and new
// are raw JSON as written by the capture triggers; a nil or empty old/new is null.
func AppendChange(dst []byte, seq int64, table, op string, pk, old, new []byte, ts int64) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"table":`...)
	dst = AppendJSONString(dst, table)
	dst = append(dst, `,"op":"`...)
	dst = append(dst, op...)
	dst = append(dst, `","pk":`...)
	dst = appendRaw(dst, pk)
	dst = append(dst, `,"old":`...)
	dst = appendRaw(dst, old)
	dst = append(dst, `,"new":`...)
	dst = appendRaw(dst, new)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	return append(dst, '}')
}

func appendRaw(dst, raw []byte) []byte {
	if len(raw) == 0 {
		return append(dst, "null"...)
	}
	return AppendRowJSON(dst, raw)
}

var ldexpTag = []byte(`{"$ldexp":[`)

// AppendRowJSON appends JSON written by SQLite (row images, keys) to dst, finished for
// clients: every {"$ldexp":[y,k]} — how the capture triggers write REALs other than
// small whole numbers, since old SQLite neither prints nor reads every double exactly
// — becomes the JSON number y·2^k, formatted as the shortest decimal that parses back
// to the same float64 (appendFloat); and invalid
// UTF-8 (SQLite copies TEXT bytes through unchecked) becomes U+FFFD, because browsers
// must drop a WebSocket whose text frame is not UTF-8. Anything else is copied.
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

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string literal. Invalid UTF-8 bytes become
// U+FFFD, as encoding/json does.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < 0x80 {
			i++
			continue
		}
		if c < 0x80 {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		// Multi-byte: validate via encoding/json's rules by falling back for the rest.
		b, _ := json.Marshal(s[start:])
		return append(dst, b[1:]...)
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// ErrGap reports a hole in the changelog: the change after the last one read is
// missing (pruned, or deleted by hand). Readers stop at it; clients get a reset.
var ErrGap = errors.New("changelog has a gap")

// Drop records that a captured table stopped existing (dropped, renamed away, or
// dropped and created again) when the changelog head was Seq: every change of the old
// table has a seq <= Seq, and a subscription naming it ends there.
type Drop struct {
	Table string
	Seq   int64
}

// Position is a change stream's extent: Head is the last assigned seq (0 if none
// ever), Oldest the oldest retained seq (Head+1 when nothing is retained).
type Position struct {
	Head   int64 `json:"head"`
	Oldest int64 `json:"oldest"`
}

// Column describes one column of a tracked table.
type Column struct {
	Name    string  `json:"name"`
	Type    string  `json:"type"`
	NotNull bool    `json:"notnull"`
	Default *string `json:"default"`
	PK      int     `json:"pk"` // 1-based position in the primary key, 0 if not part of it
	// Generated columns appear in row images but cannot be written.
	Generated bool `json:"generated,omitempty"`
}

// Table is the live schema of a tracked table.
type Table struct {
	Name       string   `json:"name"`
	PrimaryKey []string `json:"primary_key"`
	Columns    []Column `json:"columns"`
	// RowidKey is set for a table without a declared primary key: the name under which
	// rows, change keys and REST URLs carry the rowid ("rowid", or "_rowid_"/"oid" when a
	// column is named rowid).
	RowidKey     string `json:"rowid_key,omitempty"`
	WithoutRowid bool   `json:"without_rowid"`
	Strict       bool   `json:"strict"`
}

// HasRowidKey reports whether rows are addressed by rowid because the table declares
// no primary key.
func (t *Table) HasRowidKey() bool { return len(t.PrimaryKey) == 0 }

// KeyColumns is the list of columns that identify a row: the primary key, or the
// rowid key.
func (t *Table) KeyColumns() []string {
	if len(t.PrimaryKey) == 0 {
		return []string{t.RowidKey}
	}
	return t.PrimaryKey
}

// Column returns the named column, or nil.
func (t *Table) Column(name string) *Column {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i]
		}
	}
	return nil
}
