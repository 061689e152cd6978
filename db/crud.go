package db

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/store"
)

// This file is the CRUD layer behind the REST API. Its rules:
//
//   - Table and column names come from the cached live schema (d.entry), never from the
//     request, and are quoted with quoteIdent; every value is a bound parameter.
//   - Rows leave SQLite already encoded as JSON by valueExpr, the expression the capture
//     triggers use, so a REST row and a change record's row image are byte-identical.
//   - Reads run in one read transaction that also reads the changelog head (seq), so a
//     client that loads rows and then subscribes with since=seq misses nothing.
//   - Writes run through d.Write; the seq they return is the head read inside the write
//     transaction after the statement, i.e. the last change the statement made.

// Values is a row body decoded for binding: column name → int64, float64, string,
// []byte or nil.
type Values map[string]any

// RowResult is one row (JSON object; nil when there is none) and the seq it is
// consistent with.
type RowResult struct {
	Row json.RawMessage
	Seq int64
}

// Page is one page of a list query.
type Page struct {
	Rows []json.RawMessage
	Next string // cursor for the next page, "" on the last page
	Seq  int64
}

// TableInfo is a tracked table's schema and its current row count.
type TableInfo struct {
	models.Table
	RowCount int64 `json:"row_count"`
}

// Names in messages go through errors.Clip: a request may carry a table or column
// name of nearly a megabyte, and an error must not echo it back whole.

func unknownTable(name string) error {
	return errors.WithCode(errors.NotFound, errors.CodeUnknownTable, "unknown table %q", errors.Clip(name))
}

func rowNotFound(table string) error {
	return errors.WithCode(errors.NotFound, errors.CodeNotFound, "no such row in table %q", errors.Clip(table))
}

func (d *DB) lookup(name string) (*capture.Table, error) {
	e, ok := d.schema.Table(name)
	if !ok {
		return nil, unknownTable(name)
	}
	return e, nil
}

// ---------------------------------------------------------------------------
// Schema helpers

// bindText turns a text value from a URL (a key part or a filter value) into a bind
// parameter. Comparisons with a typed column convert it by the column's affinity ('7'
// finds INTEGER 7). A column with BLOB affinity (declared BLOB, or no type) compares
// storage classes as they are, so there x'HEX' binds as a BLOB, so does plain hex for
// a column declared BLOB, and a canonical integer binds as INTEGER.
func bindText(e *capture.Table, c *models.Column, s string) any {
	if e.Affinity(c) != capture.AffBlob {
		return s
	}
	if len(s) >= 3 && (s[0] == 'x' || s[0] == 'X') && s[1] == '\'' && s[len(s)-1] == '\'' {
		if b, err := hex.DecodeString(s[2 : len(s)-1]); err == nil {
			return b
		}
	}
	if c != nil && strings.Contains(strings.ToUpper(c.Type), "BLOB") {
		if b, err := hex.DecodeString(s); err == nil {
			return b
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && strconv.FormatInt(n, 10) == s {
		return n
	}
	return s
}

// keyWhere is the WHERE condition that selects the row whose key parts (text from the
// URL, in key order) are key.
func keyWhere(e *capture.Table, key []string) (string, []any, error) {
	if len(e.PrimaryKey) == 0 {
		if e.RowidName == "" {
			return "", nil, errors.WithCode(errors.Invalid, errors.CodeBadKey, "table %q has no addressable key", errors.Clip(e.Name))
		}
		if len(key) != 1 {
			return "", nil, errors.WithCode(errors.Invalid, errors.CodeBadKey, "table %q is keyed by rowid: want one key value, got %d", errors.Clip(e.Name), len(key))
		}
		n, err := strconv.ParseInt(key[0], 10, 64)
		if err != nil {
			return "", nil, rowNotFound(e.Name) // no row has a non-integer rowid
		}
		return e.RowidName + " = ?", []any{n}, nil
	}
	if len(key) != len(e.PrimaryKey) {
		return "", nil, errors.WithCode(errors.Invalid, errors.CodeBadKey,
			"the key of table %q has %d column(s) (%s): got %d comma-separated value(s)",
			errors.Clip(e.Name), len(e.PrimaryKey), errors.Clip(strings.Join(e.PrimaryKey, ", ")), len(key))
	}
	terms := make([]string, len(key))
	args := make([]any, len(key))
	for i, k := range e.PrimaryKey {
		terms[i] = capture.QuoteIdent(k) + " = ?"
		args[i] = bindText(e, e.Column(k), key[i])
	}
	return strings.Join(terms, " AND "), args, nil
}

// returningKey is what a write's RETURNING clause yields to re-read the row: the rowid,
// or for a WITHOUT ROWID table a JSON array of its encoded key values.
func returningKey(e *capture.Table) string {
	if e.HasRowid() {
		return e.RowidName
	}
	refs := make([]string, len(e.PrimaryKey))
	for i, k := range e.PrimaryKey {
		refs[i] = capture.ValueExpr(capture.QuoteIdent(k), e.Affinity(e.Column(k)))
	}
	return "json_array(" + strings.Join(refs, ",") + ")"
}

// rereadSQL selects the row a write's RETURNING clause identified (see rereadArgs).
// It runs inside the write transaction, so the row reflects what triggers did after
// the statement.
func rereadSQL(e *capture.Table) string {
	var where string
	if e.HasRowid() {
		where = e.RowidName + " = ?"
	} else {
		terms := make([]string, len(e.PrimaryKey))
		for i, k := range e.PrimaryKey {
			terms[i] = capture.QuoteIdent(k) + " IS ?"
		}
		where = strings.Join(terms, " AND ")
	}
	return "SELECT " + e.RowJSON(nil) + " FROM " + capture.QuoteIdent(e.Name) + " WHERE " + where
}

// rereadArgs turns what RETURNING yielded into rereadSQL's arguments.
func rereadArgs(e *capture.Table, ret []byte) ([]any, error) {
	if e.HasRowid() {
		n, err := strconv.ParseInt(string(ret), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("re-read row: rowid %q: %w", ret, err)
		}
		return []any{n}, nil
	}
	vals, err := decodeArray(capture.ExpandReals(nil, ret), len(e.PrimaryKey))
	if err != nil {
		return nil, fmt.Errorf("re-read row: key %s: %w", ret, err)
	}
	return vals, nil
}

// writeColumns checks a body's columns and returns their SQL references and values in
// table order (the rowid pseudo-column first).
func writeColumns(e *capture.Table, vals Values) ([]string, []any, error) {
	names := make([]string, 0, len(vals))
	for n := range vals {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		_, c, err := e.Ref(n)
		if err != nil {
			return nil, nil, err
		}
		if c != nil && c.Generated {
			return nil, nil, errors.WithCode(errors.Invalid, errors.CodeGeneratedColumn, "column %q of table %q is generated and cannot be written", errors.Clip(n), errors.Clip(e.Name))
		}
	}
	refs := make([]string, 0, len(vals))
	args := make([]any, 0, len(vals))
	if rk := e.RowidKey; rk != "" {
		if v, ok := vals[rk]; ok && e.Column(rk) == nil {
			refs = append(refs, rk)
			args = append(args, v)
		}
	}
	for _, c := range e.Columns {
		if v, ok := vals[c.Name]; ok {
			refs = append(refs, capture.QuoteIdent(c.Name))
			args = append(args, v)
		}
	}
	return refs, args, nil
}

// ---------------------------------------------------------------------------
// Reads

// TableInfos returns every tracked table's schema with its row count.
func (d *DB) TableInfos(ctx context.Context) ([]TableInfo, error) {
	tables := d.Tables()
	out := make([]TableInfo, 0, len(tables))
	err := d.readTx(ctx, "list tables", "", func(tx *sql.Tx) error {
		for _, t := range tables {
			var n int64
			if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM "+capture.QuoteIdent(t.Name)).Scan(&n); err != nil {
				if store.IsNoSuchTable(err) {
					continue // dropped since the last schema sync
				}
				return err
			}
			if t.PrimaryKey == nil {
				t.PrimaryKey = []string{}
			}
			out = append(out, TableInfo{Table: t, RowCount: n})
		}
		return nil
	})
	return out, err
}

// GetRow reads the row whose key parts are key, and the changelog head.
func (d *DB) GetRow(ctx context.Context, table string, key []string) (RowResult, error) {
	var res RowResult
	e, err := d.lookup(table)
	if err != nil {
		return res, err
	}
	where, args, err := keyWhere(e, key)
	if err != nil {
		return res, err
	}
	q := "SELECT " + e.RowJSON(nil) + " FROM " + capture.QuoteIdent(e.Name) + " WHERE " + where + " LIMIT 1"
	err = d.readTx(ctx, "get row", e.Name, func(tx *sql.Tx) error {
		var err error
		if res.Seq, err = store.Head(ctx, tx); err != nil {
			return err
		}
		var row []byte
		if err := tx.QueryRowContext(ctx, q, args...).Scan(&row); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return rowNotFound(e.Name)
			}
			return err
		}
		res.Row = capture.AppendRowJSON(nil, row)
		return nil
	})
	return res, err
}

// maxQueryArgs bounds the values one list query binds (filters, cursor and limit),
// below SQLite's limit of 32,766.
const maxQueryArgs = 30_000

// sortCol is one column of a list's sort key.
type sortCol struct {
	ref        string
	desc       bool
	nullsFirst bool
}

// ListRows reads one page of a table: the rows matching q's filters in q's order, then
// key order, after q's cursor; and the changelog head in the same transaction.
func (d *DB) ListRows(ctx context.Context, table string, q Query) (Page, error) {
	var page Page
	e, err := d.lookup(table)
	if err != nil {
		return page, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	for _, c := range q.Select {
		if _, _, err := e.Ref(c); err != nil {
			return page, err
		}
	}

	// The sort key: the requested order, then the key, then (for a rowid table whose
	// declared key may hold NULLs) the rowid, so the order is total and keyset
	// pagination neither skips nor repeats a row.
	var sorts []sortCol
	seen := map[string]bool{}
	add := func(s sortCol) {
		if !seen[s.ref] {
			seen[s.ref] = true
			sorts = append(sorts, s)
		}
	}
	for _, o := range q.Order {
		ref, _, err := e.Ref(o.Column)
		if err != nil {
			return page, err
		}
		add(sortCol{ref: ref, desc: o.Desc, nullsFirst: o.NullsFirst})
	}
	if rk := e.RowidKey; rk != "" {
		add(sortCol{ref: rk, nullsFirst: true})
	} else {
		for _, k := range e.PrimaryKey {
			add(sortCol{ref: capture.QuoteIdent(k), nullsFirst: true})
		}
		if e.HasRowid() && !pkIsRowid(e) {
			add(sortCol{ref: e.RowidName, nullsFirst: true})
		}
	}

	var where []string
	var args []any
	for _, f := range q.Filters {
		cond, fargs, err := filterSQL(e, f)
		if err != nil {
			return page, err
		}
		where = append(where, cond)
		args = append(args, fargs...)
	}
	if q.After != "" {
		vals, err := decodeCursor(q.After, len(sorts))
		if err != nil {
			return page, err
		}
		cond, cargs := keysetCond(sorts, vals)
		where = append(where, cond)
		args = append(args, cargs...)
	}

	// ParseQuery bounds filters and order; this bounds what a hand-built Query or a
	// table with a very wide key could still bind, below SQLite's limit.
	if len(args) >= maxQueryArgs {
		return page, errors.WithCode(errors.Invalid, errors.CodeBadRequest, "the query would bind %d values; at most %d", len(args)+1, maxQueryArgs)
	}

	var b strings.Builder
	b.WriteString("SELECT ")
	b.WriteString(e.RowJSON(q.Select))
	b.WriteString(", json_array(")
	for i, s := range sorts {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(capture.ValueExpr(s.ref, capture.AffBlob)) // the class order only affects speed
	}
	b.WriteString(") FROM ")
	b.WriteString(capture.QuoteIdent(e.Name))
	if len(where) > 0 {
		b.WriteString(" WHERE ")
		b.WriteString(strings.Join(where, " AND "))
	}
	b.WriteString(" ORDER BY ")
	for i, s := range sorts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s.ref)
		if s.desc {
			b.WriteString(" DESC")
		}
		if s.nullsFirst == s.desc { // not SQLite's default for this direction
			if s.nullsFirst {
				b.WriteString(" NULLS FIRST")
			} else {
				b.WriteString(" NULLS LAST")
			}
		}
	}
	b.WriteString(" LIMIT ?")
	args = append(args, limit+1)
	stmt := b.String()

	err = d.readTx(ctx, "list rows", e.Name, func(tx *sql.Tx) error {
		var err error
		if page.Seq, err = store.Head(ctx, tx); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, stmt, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		page.Rows = make([]json.RawMessage, 0, min(limit, 64))
		var last []byte
		for rows.Next() {
			var row, cur []byte
			if err := rows.Scan(&row, &cur); err != nil {
				return err
			}
			if len(page.Rows) == limit {
				page.Next = base64.RawURLEncoding.EncodeToString(last)
				break
			}
			page.Rows = append(page.Rows, capture.AppendRowJSON(nil, row))
			last = capture.ExpandReals(nil, cur) // exact: a cursor is ours, not a client's
		}
		return rows.Err()
	})
	return page, err
}

// pkIsRowid reports whether the declared key is an INTEGER PRIMARY KEY, an alias of the
// rowid (so ordering by it already is a total order).
func pkIsRowid(e *capture.Table) bool {
	if e.WithoutRowid || len(e.PrimaryKey) != 1 {
		return false
	}
	c := e.Column(e.PrimaryKey[0])
	return c != nil && strings.EqualFold(strings.TrimSpace(c.Type), "INTEGER")
}

// filterSQL is the condition and arguments of one filter.
func filterSQL(e *capture.Table, f Filter) (string, []any, error) {
	ref, c, err := e.Ref(f.Column)
	if err != nil {
		return "", nil, err
	}
	one := func(op string) (string, []any, error) {
		if len(f.Values) != 1 {
			return "", nil, badFilter("filter on %q: %s takes one value", errors.Clip(f.Column), f.Op)
		}
		return ref + " " + op + " ?", []any{bindText(e, c, f.Values[0])}, nil
	}
	switch f.Op {
	case OpEq:
		return one("=")
	case OpNeq:
		return one("<>")
	case OpLt:
		return one("<")
	case OpLte:
		return one("<=")
	case OpGt:
		return one(">")
	case OpGte:
		return one(">=")
	case OpLike:
		if len(f.Values) != 1 {
			return "", nil, badFilter("filter on %q: like takes one pattern", errors.Clip(f.Column))
		}
		return ref + " LIKE ?", []any{f.Values[0]}, nil // LIKE compares text
	case OpIn:
		if len(f.Values) == 0 {
			return "0", nil, nil
		}
		args := make([]any, len(f.Values))
		for i, v := range f.Values {
			args[i] = bindText(e, c, v)
		}
		return ref + " IN (" + strings.TrimSuffix(strings.Repeat("?,", len(args)), ",") + ")", args, nil
	case OpIs:
		if len(f.Values) == 1 && f.Values[0] == isNull {
			return ref + " IS NULL", nil, nil
		}
		if len(f.Values) == 1 && f.Values[0] == notNull {
			return ref + " IS NOT NULL", nil, nil
		}
		return "", nil, badFilter("filter on %q: is takes null or notnull", errors.Clip(f.Column))
	}
	return "", nil, badFilter("filter on %q: unknown operator %q", errors.Clip(f.Column), errors.Clip(f.Op))
}

// keysetCond is the condition "the row's sort key comes after vals" in the order sorts
// describes, NULLs placed as the order places them. Comparisons use the columns' own
// collation and affinity, as ORDER BY does.
func keysetCond(sorts []sortCol, vals []any) (string, []any) {
	simple := true
	for i, s := range sorts {
		if s.desc || !s.nullsFirst || vals[i] == nil {
			simple = false
			break
		}
	}
	if simple {
		// Ascending, NULLs first, no NULL in the cursor: a row value comparison, which
		// SQLite answers from the index. A NULL in a row makes the comparison NULL, and
		// such a row sorts before the cursor anyway.
		if len(sorts) == 1 {
			return sorts[0].ref + " > ?", vals
		}
		refs := make([]string, len(sorts))
		for i, s := range sorts {
			refs[i] = s.ref
		}
		return "(" + strings.Join(refs, ", ") + ") > (" + strings.TrimSuffix(strings.Repeat("?,", len(sorts)), ",") + ")", vals
	}
	var ors []string
	var args []any
	for i, s := range sorts {
		var after string
		var aargs []any
		v := vals[i]
		switch {
		case v == nil && s.nullsFirst:
			after = s.ref + " IS NOT NULL"
		case v == nil:
			continue // NULLs last: nothing sorts after NULL on this column
		default:
			op := " > ?"
			if s.desc {
				op = " < ?"
			}
			after = s.ref + op
			if !s.nullsFirst {
				after = "(" + after + " OR " + s.ref + " IS NULL)"
			}
			aargs = []any{v}
		}
		terms := make([]string, 0, i+1)
		for j := 0; j < i; j++ {
			terms = append(terms, sorts[j].ref+" IS ?")
			args = append(args, vals[j])
		}
		terms = append(terms, after)
		args = append(args, aargs...)
		ors = append(ors, "("+strings.Join(terms, " AND ")+")")
	}
	if len(ors) == 0 {
		return "0", nil
	}
	return "(" + strings.Join(ors, " OR ") + ")", args
}

// decodeCursor decodes an after cursor: base64url of the JSON array of the last row's
// sort key values, encoded as row values are.
func decodeCursor(s string, n int) ([]any, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, errors.WithCode(errors.Invalid, errors.CodeBadCursor, "after: not a cursor from this list's next")
	}
	vals, err := decodeArray(raw, n)
	if err != nil {
		return nil, errors.WithCode(errors.Invalid, errors.CodeBadCursor, "after: not a cursor from this list's next (with the same order)")
	}
	return vals, nil
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

// ChangesSince is changelog.Log.Since: GET /api/changes.
func (d *DB) ChangesSince(ctx context.Context, since int64, limit, maxBytes int) (changelog.Page, error) {
	return d.log.Since(ctx, since, limit, maxBytes)
}

// ---------------------------------------------------------------------------
// Writes

// write runs one write statement through d.Write and returns what the write
// transaction read: the statement's RETURNING value (nil for a statement without one),
// then the row re-read by rereadSQL (when reread is set) and the head (the seq of the
// statement's last change). It bounds the wait for the writer (queued requests and
// another process's lock) so a stuck database answers 503 instead of hanging, and
// classifies constraint violations. notFound is returned when the statement touched
// no row.
func (d *DB) write(ctx context.Context, op string, e *capture.Table, stmt string, args []any, returning, reread bool) (RowResult, error) {
	var res RowResult
	ctx, cancel := context.WithTimeout(ctx, 2*d.BusyTimeout())
	defer cancel()
	if err := d.requireCaptured(ctx, op, e.Name); err != nil {
		return res, err
	}
	var rereadQ string
	if reread {
		rereadQ = rereadSQL(e)
	}
	// Prepare (or find prepared) before taking the writer: preparing needs the
	// writer connection, which the transaction then holds.
	sMain, sReread, sHead := d.prepared(ctx, stmt), d.prepared(ctx, rereadQ), d.prepared(ctx, store.HeadSQL)
	err := d.writeTx(ctx, op, e.Name, func(tx *sql.Tx) error {
		q := wtx{ctx, tx}
		if returning {
			var ret []byte
			if err := q.row(sMain, stmt, args...).Scan(&ret); err != nil {
				if errors.Is(err, sql.ErrNoRows) {
					return rowNotFound(e.Name)
				}
				return err
			}
			if reread {
				rargs, err := rereadArgs(e, ret)
				if err != nil {
					return err
				}
				var row []byte
				err = q.row(sReread, rereadQ, rargs...).Scan(&row)
				switch {
				case errors.Is(err, sql.ErrNoRows): // a trigger removed it again: row null
				case err != nil:
					return err
				default:
					res.Row = capture.AppendRowJSON(nil, row)
				}
			}
		} else {
			r, err := q.exec(sMain, stmt, args...)
			if err != nil {
				return err
			}
			n, err := r.RowsAffected()
			if err != nil {
				return err
			}
			if n == 0 {
				return rowNotFound(e.Name)
			}
		}
		return q.row(sHead, store.HeadSQL).Scan(&res.Seq)
	})
	return res, err
}

// requireCaptured refuses a write to a table whose changes would not be captured:
// one created (or dropped and created again) a moment ago, whose triggers the next
// trigger sync installs. A write through sqlws is captured or refused, never left out
// of the changelog. The snapshot can lag the triggers by one refresh, so it is
// refreshed before refusing. A database served read-only refuses every write anyway.
func (d *DB) requireCaptured(ctx context.Context, op, table string) error {
	if d.schema.Captured(table) || d.ReadOnly() != "" {
		return nil
	}
	if err := d.schema.Refresh(ctx); err != nil {
		return err
	}
	if d.schema.Captured(table) {
		return nil
	}
	return errors.E(errors.Op(op), errors.Unavailable,
		fmt.Sprintf("table %q is not captured yet (it was just created or replaced); retry", errors.Clip(table)))
}

// wtx runs statements in a write transaction, through a prepared statement when it
// has one.
type wtx struct {
	ctx context.Context
	tx  *sql.Tx
}

func (q wtx) row(s *sql.Stmt, query string, args ...any) *sql.Row {
	if s != nil {
		return q.tx.StmtContext(q.ctx, s).QueryRowContext(q.ctx, args...)
	}
	return q.tx.QueryRowContext(q.ctx, query, args...)
}

func (q wtx) exec(s *sql.Stmt, query string, args ...any) (sql.Result, error) {
	if s != nil {
		return q.tx.StmtContext(q.ctx, s).ExecContext(q.ctx, args...)
	}
	return q.tx.ExecContext(q.ctx, query, args...)
}

// Prepared writer statements. Compiling an INSERT, UPDATE or DELETE also compiles the
// table's capture triggers (a few hundred expression nodes), which is most of the cost
// of a small write, so each DB keeps its CRUD write statements prepared on the writer
// connection, keyed by their text. SQLite re-prepares a statement by itself when the
// schema changes. The cache is bounded: past maxCachedStmts texts (e.g. after many
// schema changes) statements are compiled per use again.
type stmtCache struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

const maxCachedStmts = 256

func (d *DB) stmtCache() *stmtCache { return &d.stmts }

// close closes every cached statement.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, s := range c.m {
		s.Close()
		delete(c.m, k)
	}
}

// prepared returns the prepared writer statement for query, preparing it on first
// use; nil (run it unprepared) for "", when the cache is full, or when preparing fails
// (running it then reports the error). It must not be called inside a write
// transaction.
func (d *DB) prepared(ctx context.Context, query string) *sql.Stmt {
	if query == "" {
		return nil
	}
	c := d.stmtCache()
	c.mu.Lock()
	s, ok := c.m[query]
	full := len(c.m) >= maxCachedStmts
	c.mu.Unlock()
	if ok || full {
		return s
	}
	s, err := d.Writer().PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[query]; ok { // prepared concurrently
		s.Close()
		return old
	}
	if len(c.m) >= maxCachedStmts {
		s.Close()
		return nil
	}
	c.m[query] = s
	return s
}

// CreateRow inserts a row and returns it as stored (after triggers) with the seq of the
// last change the insert made.
func (d *DB) CreateRow(ctx context.Context, table string, vals Values) (RowResult, error) {
	var res RowResult
	e, err := d.lookup(table)
	if err != nil {
		return res, err
	}
	refs, args, err := writeColumns(e, vals)
	if err != nil {
		return res, err
	}
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(capture.QuoteIdent(e.Name))
	if len(refs) == 0 {
		b.WriteString(" DEFAULT VALUES")
	} else {
		b.WriteString(" (")
		b.WriteString(strings.Join(refs, ", "))
		b.WriteString(") VALUES (")
		b.WriteString(strings.TrimSuffix(strings.Repeat("?,", len(refs)), ","))
		b.WriteString(")")
	}
	b.WriteString(" RETURNING ")
	b.WriteString(returningKey(e))
	return d.write(ctx, "create row", e, b.String(), args, true, true)
}

// UpdateRow sets the given columns of the row whose key parts are key, and returns it
// as stored with the seq of the last change the update made.
func (d *DB) UpdateRow(ctx context.Context, table string, key []string, vals Values) (RowResult, error) {
	var res RowResult
	e, err := d.lookup(table)
	if err != nil {
		return res, err
	}
	where, kargs, err := keyWhere(e, key)
	if err != nil {
		return res, err
	}
	refs, args, err := writeColumns(e, vals)
	if err != nil {
		return res, err
	}
	if len(refs) == 0 {
		return res, errors.WithCode(errors.Invalid, errors.CodeBadRequest, "nothing to update: the body names no column")
	}
	sets := make([]string, len(refs))
	for i, r := range refs {
		sets[i] = r + " = ?"
	}
	stmt := "UPDATE " + capture.QuoteIdent(e.Name) + " SET " + strings.Join(sets, ", ") + " WHERE " + where + " RETURNING " + returningKey(e)
	return d.write(ctx, "update row", e, stmt, append(args, kargs...), true, true)
}

// DeleteRow deletes the row whose key parts are key and returns the seq of the last
// change the delete made.
func (d *DB) DeleteRow(ctx context.Context, table string, key []string) (int64, error) {
	e, err := d.lookup(table)
	if err != nil {
		return 0, err
	}
	where, args, err := keyWhere(e, key)
	if err != nil {
		return 0, err
	}
	res, err := d.write(ctx, "delete row", e, "DELETE FROM "+capture.QuoteIdent(e.Name)+" WHERE "+where, args, false, false)
	return res.Seq, err
}

// ---------------------------------------------------------------------------
// Values

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

// ---------------------------------------------------------------------------
// Errors

// classifyTable adds to store's classification what only a statement on table can
// mean: a constraint violation is Conflict naming the constraint (its columns without
// the table prefix), a non-integer rowid is wrong_type, and "no such table" for table
// (dropped under the request) is unknown_table. Anything store classified already, or
// that is not SQLite's, passes through.
func classifyTable(op, table string, err error) error {
	if err == nil || errors.KindOf(err) != errors.Internal {
		return err
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	if m := constraintErr(se, table); m != nil {
		return m
	}
	if se.Code()&0xff == sqlite3.SQLITE_MISMATCH {
		// A non-integer for a rowid or INTEGER PRIMARY KEY: the client's mistake.
		return errors.E(errors.Op(op), errors.Invalid, errors.CodeWrongType,
			fmt.Sprintf("table %q: the row key must be an integer", errors.Clip(table)), err)
	}
	if table != "" && store.IsNoSuchTable(err) {
		return errors.E(errors.Op(op), errors.NotFound, errors.CodeUnknownTable, fmt.Sprintf("unknown table %q", errors.Clip(table)), err)
	}
	return err
}

// sqliteMessage is SQLite's own message in a modernc error: "constraint failed: UNIQUE
// constraint failed: t.email (2067)" → "UNIQUE constraint failed: t.email".
func sqliteMessage(se *sqlite.Error) string {
	s := se.Error()
	s = strings.TrimSuffix(s, " (SQLITE_BUSY)")
	if i := strings.LastIndex(s, " ("); i >= 0 && strings.HasSuffix(s, ")") {
		s = s[:i]
	}
	return s
}

// constraintErr classifies a constraint violation, or returns nil.
func constraintErr(se *sqlite.Error, table string) error {
	code := se.Code()
	if code&0xff != sqlite3.SQLITE_CONSTRAINT {
		return nil
	}
	msg := sqliteMessage(se)
	after := func(marker string) string {
		if i := strings.Index(msg, marker); i >= 0 {
			return msg[i+len(marker):]
		}
		return ""
	}
	// columns turns "t.a, t.b" into "a, b" (dropping this table's prefix).
	columns := func(s string) string {
		parts := strings.Split(s, ", ")
		for i, p := range parts {
			parts[i] = strings.TrimPrefix(p, table+".")
		}
		return strings.Join(parts, ", ")
	}
	conflict := func(c errors.Code, format string, args ...any) error {
		return errors.E(errors.Conflict, c, fmt.Sprintf(format, args...), error(se))
	}
	switch code {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return conflict(errors.CodeUniqueViolation, "UNIQUE constraint failed on column %s", columns(after("UNIQUE constraint failed: ")))
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_ROWID:
		cols := columns(after("UNIQUE constraint failed: "))
		if cols == "" {
			cols = "rowid"
		}
		return conflict(errors.CodePrimaryKeyViolation, "PRIMARY KEY constraint failed on column %s: the key is taken", cols)
	case sqlite3.SQLITE_CONSTRAINT_NOTNULL:
		return conflict(errors.CodeNotNullViolation, "NOT NULL constraint failed on column %s", columns(after("NOT NULL constraint failed: ")))
	case sqlite3.SQLITE_CONSTRAINT_CHECK:
		return conflict(errors.CodeCheckViolation, "CHECK constraint failed: %s", after("CHECK constraint failed: "))
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return conflict(errors.CodeForeignKeyViolation, "FOREIGN KEY constraint failed")
	case sqlite3.SQLITE_CONSTRAINT_TRIGGER:
		msg := after("constraint failed: ")
		if capture.IsGuardMessage(msg) {
			// sqlws's own guard (PauseCapture): not the client's fault, and over once
			// capture resumes.
			return errors.E(errors.Unavailable, errors.CodeCapturePaused, msg+" (retry later)", error(se))
		}
		return conflict(errors.CodeTriggerViolation, "refused by a trigger: %s", msg)
	case sqlite3.SQLITE_CONSTRAINT_DATATYPE:
		return errors.E(errors.Invalid, errors.CodeWrongType, after("constraint failed: "), error(se))
	}
	return conflict(errors.CodeConstraintViolation, "constraint failed")
}
