// Package models holds the types every sqlws package shares: change records, stream
// positions and table schemas. It imports nothing of sqlws's own, so any package can
// depend on it without cycles.
package models

import (
	"encoding/json"
	"errors"
	"strconv"
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
	Seq   int64  `json:"seq"`
	Table string `json:"table"`
	Op    string `json:"op"`
	// Moved is set only for a filtered subscription: "in" for an update that brought
	// the row into its filter (Old is null), "out" for one that took it out (New is
	// null).
	Moved string          `json:"moved,omitempty"`
	PK    json.RawMessage `json:"pk"`
	Old   json.RawMessage `json:"old"`
	New   json.RawMessage `json:"new"`
	TS    int64           `json:"ts"`
}

// Encoded is a change record already encoded as its protocol JSON object. The fan-out
// keeps changes in this form so each change is encoded once, however many subscribers
// receive it. An entry without JSON holds a seq but is no change (a changelog mark):
// every reader passes over it.
type Encoded struct {
	Seq   int64
	Table string
	JSON  []byte
}

// AppendChange appends the protocol JSON object of one change to dst. pk, old and
// new are JSON values as clients get them, copied as they are; a nil or empty old or
// new is null.
func AppendChange(dst []byte, seq int64, table, op string, pk, old, new []byte, ts int64) []byte {
	return AppendChangeWith(dst, nil, seq, table, op, pk, old, new, ts)
}

// AppendChangeWith is AppendChange with appendValue writing each of pk, old and new
// that is present (nil: copy it): the changelog passes the decoder of the format its
// images are stored in (capture.AppendRowJSON), so that the record is finished for
// clients in one pass.
func AppendChangeWith(dst []byte, appendValue func(dst, raw []byte) []byte, seq int64, table, op string, pk, old, new []byte, ts int64) []byte {
	return appendChange(dst, appendValue, seq, table, op, "", pk, old, new, ts)
}

// Moved values: how an update crossed a filtered subscription's filter.
const (
	MovedIn  = "in"
	MovedOut = "out"
)

// AppendMovedChange is AppendChange for a filtered subscription's record: moved is
// "" (an ordinary change), MovedIn or MovedOut.
func AppendMovedChange(dst []byte, seq int64, table, op, moved string, pk, old, new []byte, ts int64) []byte {
	return appendChange(dst, nil, seq, table, op, moved, pk, old, new, ts)
}

func appendChange(dst []byte, appendValue func(dst, raw []byte) []byte, seq int64, table, op, moved string, pk, old, new []byte, ts int64) []byte {
	if appendValue == nil {
		appendValue = appendCopy
	}
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"table":`...)
	dst = AppendJSONString(dst, table)
	dst = append(dst, `,"op":"`...)
	dst = append(dst, op...)
	if moved != "" {
		dst = append(dst, `","moved":"`...)
		dst = append(dst, moved...)
	}
	dst = append(dst, `","pk":`...)
	dst = appendValueOrNull(dst, pk, appendValue)
	dst = append(dst, `,"old":`...)
	dst = appendValueOrNull(dst, old, appendValue)
	dst = append(dst, `,"new":`...)
	dst = appendValueOrNull(dst, new, appendValue)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	return append(dst, '}')
}

func appendValueOrNull(dst, raw []byte, appendValue func(dst, raw []byte) []byte) []byte {
	if len(raw) == 0 {
		return append(dst, "null"...)
	}
	return appendValue(dst, raw)
}

func appendCopy(dst, raw []byte) []byte { return append(dst, raw...) }

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
	// Collations maps each column that declares a collating sequence (COLLATE
	// NOCASE) to its name, upper-cased; a column absent from it compares with BINARY.
	// nil (JSON null) when the collations are not known (a Table built by hand, or a
	// schema text sqlws could not read): filters on the stream then refuse text
	// comparisons rather than guess. Edges get it with the rest of the schema.
	Collations map[string]string `json:"collations"`
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
