package crud

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/store"
)

// write runs one write statement in one transaction on the store's writer and returns
// what the transaction read: the statement's RETURNING value (nil for a statement
// without one), then the row re-read by rereadSQL (when reread is set) and the head
// (the seq of the statement's last change). It bounds the wait for the writer (queued
// requests and another process's lock) so a stuck database answers 503 instead of
// hanging, and classifies constraint violations (classify). not_found is returned
// when the statement touched no row.
func (d *DB) write(ctx context.Context, op string, e *capture.Table, stmt string, args []any, returning, reread bool) (RowResult, error) {
	var res RowResult
	ctx, cancel := context.WithTimeout(ctx, 2*d.db.BusyTimeout())
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
	err := d.writeTable(ctx, op, e.Name, func(tx *sql.Tx) error {
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
	if d.schema.Captured(table) || d.db.ReadOnly() != "" {
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
	s, err := d.db.Writer().PrepareContext(ctx, query)
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
