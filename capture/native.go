package capture

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sqlws/sqlws/store"
)

// The native layout of sqlws_changes. A capture trigger copies each value of the row
// image, as SQLite holds it, into a value column of the changelog (v0, v1, …): no
// JSON, no type tests, no printf in the writer's transaction, and lossless by
// construction, since a column without a declared type stores any value as it is.
// The image's shape — the table, its members' names and declared types, which
// members are the key — is recorded once in sqlws_shapes, and the trigger writes its
// id (sid). The reader turns the values into the same JSON the JSON layout produced
// (AppendNativeChange), byte for byte.
//
// This is what capture costs the writer least: copying values is cheaper than
// encoding them in SQL, and the changelog's seq needs no AUTOINCREMENT (migration
// 00004), which was a write to sqlite_sequence per change. Measured with
// BenchmarkCapture and a C-SQLite writer: rows/s with capture ÷ without went from
// 0.46 to about 0.65 in 1-row transactions and from 0.25 to about 0.44 in 1,000-row
// ones, beyond a naive json_object trigger's 0.53 and 0.38.
//
// An update's image takes twice its members (old values, then new); the changelog
// grows value columns as wider tables are captured, up to maxNativeMembers per image.
// Wider tables, and the REPLACE conflict deletes (triggers.go), keep the JSON layout;
// the reader handles both, row by row.

// maxNativeMembers is the widest row image the native layout holds. Every changelog
// row pays (on read and write) for every value column, so they stop at twice this.
const maxNativeMembers = 32

// valueColumn is the name of the i-th value column.
func valueColumn(i int) string { return "v" + strconv.Itoa(i) }

// members are the names, the SQL reference (given the alias NEW or OLD) and the
// declared types of the members of t's row image, in the image's order: the rowid
// first for a table without a declared key (as rowExpr and RowJSON write it), then
// the columns.
func (t *Table) members() (names, types []string, ref func(alias string, i int) string) {
	if len(t.PrimaryKey) == 0 {
		names, types = append(names, t.RowidName), append(types, "INTEGER")
	}
	for _, c := range t.Columns {
		names, types = append(names, c.Name), append(types, c.Type)
	}
	ref = func(alias string, i int) string {
		if len(t.PrimaryKey) == 0 {
			if i == 0 {
				return alias + "." + t.RowidName
			}
			i--
		}
		return alias + "." + QuoteIdent(t.Columns[i].Name)
	}
	return names, types, ref
}

// keyPositions are the positions of the key members in t's image.
func (t *Table) keyPositions() []int {
	var pos []int
	if len(t.PrimaryKey) == 0 {
		return []int{0}
	}
	for _, k := range t.PrimaryKey {
		for i, c := range t.Columns {
			if c.Name == k {
				pos = append(pos, i)
			}
		}
	}
	return pos
}

// native reports whether t's changes can use the native layout.
func (t *Table) native() bool {
	n := len(t.Columns)
	if len(t.PrimaryKey) == 0 {
		n++
	}
	return n <= maxNativeMembers
}

// Shape is the layout of a native changelog row's image: its table, members (names
// and declared types, in order) and key positions.
type Shape struct {
	ID      int64
	Table   string
	Members []string
	Types   []string
	Key     []int
}

// shapeDef is t's shape as sqlws_shapes stores it.
func shapeDef(t *Table) (cols, key, types string) {
	names, decl, _ := t.members()
	c, _ := json.Marshal(names)
	k, _ := json.Marshal(t.keyPositions())
	ty, _ := json.Marshal(decl)
	return string(c), string(k), string(ty)
}

// shapeID returns the id of t's shape in sqlws_shapes; with register it records the
// shape if it is not there yet (and q must be a write transaction), else it reports
// 0 for a shape not recorded.
func shapeID(ctx context.Context, q store.Querier, t *Table, register bool) (int64, error) {
	cols, key, types := shapeDef(t)
	find := func() (int64, error) {
		rows, err := q.QueryContext(ctx, `SELECT sid FROM sqlws_shapes WHERE tbl = ? AND cols = ? AND key = ? AND types = ?`, t.Name, cols, key, types)
		if err != nil {
			return 0, fmt.Errorf("find the shape of %q: %w", t.Name, err)
		}
		defer rows.Close()
		var id int64
		if rows.Next() {
			if err := rows.Scan(&id); err != nil {
				return 0, err
			}
		}
		return id, rows.Err()
	}
	id, err := find()
	if err != nil || id != 0 || !register {
		return id, err
	}
	tx, ok := q.(*sql.Tx)
	if !ok {
		return 0, fmt.Errorf("record the shape of %q: not in a write transaction", t.Name)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO sqlws_shapes (tbl, cols, key, types) VALUES (?, ?, ?, ?)`, t.Name, cols, key, types)
	if err != nil {
		return 0, fmt.Errorf("record the shape of %q: %w", t.Name, err)
	}
	return res.LastInsertId()
}

var valueColumnRE = regexp.MustCompile(`^v[0-9]+$`)

// ensureValueColumns makes sure sqlws_changes has at least n value columns: adding a
// column is a change to the schema only, and rows already written read the new one
// as NULL.
func ensureValueColumns(ctx context.Context, tx *sql.Tx, n int) error {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM pragma_table_info('sqlws_changes')`)
	if err != nil {
		return fmt.Errorf("list the changelog's columns: %w", err)
	}
	have := 0
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		if valueColumnRE.MatchString(name) {
			have++
		}
	}
	rows.Close()
	for i := have; i < n; i++ {
		if _, err := tx.ExecContext(ctx, "ALTER TABLE sqlws_changes ADD COLUMN "+valueColumn(i)); err != nil {
			return fmt.Errorf("add value column %d to the changelog: %w", i, err)
		}
	}
	return nil
}

// nativeRecord is the statement a trigger runs to record op on t with shape sid:
// the values of the OLD and/or NEW row copied into the value columns (an update's old
// image first, then its new one).
func nativeRecord(t *Table, sid int64, op string) string {
	names, _, ref := t.members()
	n := len(names)
	var cols, vals []string
	add := func(alias string, base int) {
		for i := range n {
			cols = append(cols, valueColumn(base+i))
			vals = append(vals, ref(alias, i))
		}
	}
	switch op {
	case "insert":
		add("NEW", 0)
	case "update":
		add("OLD", 0)
		add("NEW", n)
	case "delete":
		add("OLD", 0)
	}
	return "INSERT INTO sqlws_changes (tbl, op, ts, sid, " + strings.Join(cols, ", ") + ") VALUES (" +
		QuoteLiteral(t.Name) + ", '" + op + "', " + tsExpr + ", " + strconv.FormatInt(sid, 10) + ", " +
		strings.Join(vals, ", ") + "); "
}

// AppendNativeChange appends the protocol JSON record of a native changelog row to
// dst: op's images from vals (the row's value columns, as database/sql scans them
// into any: int64, float64, string, []byte or nil) laid out by shape, and the key
// built from the image that holds it. The JSON is exactly what the JSON layout
// yields for the same change (and REST for the same row): the private value format.
func AppendNativeChange(dst []byte, seq int64, op string, shape *Shape, vals []any, ts int64) ([]byte, error) {
	n := len(shape.Members)
	var old, nw []any
	switch {
	case op == "insert" && len(vals) >= n:
		nw = vals[:n]
	case op == "update" && len(vals) >= 2*n:
		old, nw = vals[:n], vals[n:2*n]
	case op == "delete" && len(vals) >= n:
		old = vals[:n]
	default:
		return dst, fmt.Errorf("changelog row %d: %s of %q with %d values, want %d per image", seq, op, shape.Table, len(vals), n)
	}
	keyImg := nw
	if op == "delete" {
		keyImg = old
	}
	start := len(dst)
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"table":`...)
	dst = appendJSONText(dst, shape.Table)
	dst = append(dst, `,"op":"`...)
	dst = append(dst, op...)
	dst = append(dst, `","pk":{`...)
	for i, p := range shape.Key {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONText(dst, shape.Members[p])
		dst = append(dst, ':')
		dst = appendValue(dst, keyImg[p])
	}
	dst = append(dst, `},"old":`...)
	dst = appendImage(dst, shape, old)
	dst = append(dst, `,"new":`...)
	dst = appendImage(dst, shape, nw)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, '}')
	// SQLite copies TEXT bytes through unchecked; browsers drop a WebSocket whose
	// text frame is not UTF-8 (AppendRowJSON does the same for the JSON layout).
	if rec := dst[start:]; !utf8.Valid(rec) {
		fixed := bytes.ToValidUTF8(rec, []byte("\uFFFD"))
		dst = append(dst[:start], fixed...)
	}
	return dst, nil
}

// appendImage appends an image as a JSON object, null for none.
func appendImage(dst []byte, shape *Shape, vals []any) []byte {
	if vals == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '{')
	for i, v := range vals {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONText(dst, shape.Members[i])
		dst = append(dst, ':')
		dst = appendValue(dst, v)
	}
	return append(dst, '}')
}

// appendValue appends one value in the private format, as valueExpr encodes it in SQL
// and AppendRowJSON finishes it: integers as they are, REALs exactly (whole numbers
// below 10^15 as SQLite writes them, 7.0; others as the shortest decimal that reads
// back the same; infinities tagged), text as a JSON string escaped as SQLite
// escapes it, BLOBs as {"$blob":"HEX"}.
func appendValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...)
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case float64:
		switch {
		case math.IsInf(v, 1):
			return append(dst, `{"$real":"Infinity"}`...)
		case math.IsInf(v, -1):
			return append(dst, `{"$real":"-Infinity"}`...)
		case math.Abs(v) < 1e15 && v == math.Trunc(v):
			if v == 0 {
				return append(dst, "0.0"...) // -0.0 too: SQLite prints no sign
			}
			dst = strconv.AppendInt(dst, int64(v), 10)
			return append(dst, ".0"...)
		}
		return appendFloat(dst, v)
	case string:
		return appendJSONText(dst, v)
	case []byte:
		dst = append(dst, `{"$blob":"`...)
		n := len(dst)
		dst = append(dst, make([]byte, hex.EncodedLen(len(v)))...)
		hex.Encode(dst[n:], v)
		for i := n; i < len(dst); i++ {
			if c := dst[i]; c >= 'a' && c <= 'f' {
				dst[i] = c - 'a' + 'A'
			}
		}
		return append(dst, `"}`...)
	case bool: // not from SQLite; kept total
		if v {
			return append(dst, '1')
		}
		return append(dst, '0')
	}
	return append(dst, "null"...)
}

// sqliteEscape is how SQLite's JSON functions escape the control characters that
// have a short form; the others are written \u00XX, and bytes from 0x7F up as they
// are.
var sqliteEscape = [32]byte{8: 'b', 9: 't', 10: 'n', 12: 'f', 13: 'r'}

// appendJSONText appends s as a JSON string exactly as SQLite's json_object writes
// it (quote and backslash escaped, control characters escaped, everything else —
// invalid UTF-8 included — copied; the caller repairs UTF-8 afterwards).
func appendJSONText[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		start = i + 1
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case sqliteEscape[c] != 0:
			dst = append(dst, '\\', sqliteEscape[c])
		default:
			dst = append(dst, '\\', 'u', '0', '0', '0'+c>>4, "0123456789abcdef"[c&0xf])
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// ParseShape reads a shape as sqlws_shapes stores it.
func ParseShape(id int64, table, cols, key, types string) (*Shape, error) {
	s := &Shape{ID: id, Table: table}
	if err := json.Unmarshal([]byte(cols), &s.Members); err != nil {
		return nil, fmt.Errorf("shape %d: members: %w", id, err)
	}
	if err := json.Unmarshal([]byte(key), &s.Key); err != nil {
		return nil, fmt.Errorf("shape %d: key: %w", id, err)
	}
	if err := json.Unmarshal([]byte(types), &s.Types); err != nil {
		return nil, fmt.Errorf("shape %d: types: %w", id, err)
	}
	for _, p := range s.Key {
		if p < 0 || p >= len(s.Members) {
			return nil, fmt.Errorf("shape %d: key position %d of %d members", id, p, len(s.Members))
		}
	}
	return s, nil
}
