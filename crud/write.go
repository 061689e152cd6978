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

// writeReq is one write statement and the access checks around it.
type writeReq struct {
	op        string
	e         *capture.Table
	stmt      string
	args      []any
	returning bool // stmt returns the row's key (returningKey)
	reread    bool // re-read the row by that key after the statement
	// pre, when set, selects (readable, writable) of the old row before the
	// statement, with preArgs: a row the token cannot read is not found, one it
	// cannot write is forbidden.
	pre     string
	preArgs []any
	// post, when set, is the write rule the new row (the one RETURNING keyed) must
	// meet, with postArgs (they come before the key's: the rule is in the SELECT list).
	post     string
	postArgs []any
	// readCond, when set, restricts the re-read to a row the token can read (with
	// readArgs after the key's): any other is answered as null.
	readCond string
	readArgs []any
}

// write runs one write statement in one transaction on the store's writer and returns
// what the transaction read: the statement's RETURNING value (nil for a statement
// without one), then the row re-read by rereadSQL (when reread is set) and the head
// (the seq of the statement's last change). It bounds the wait for the writer (queued
// requests and another process's lock) so a stuck database answers 503 instead of
// hanging, and classifies constraint violations (classify). not_found is returned
// when the statement touched no row. The access checks run inside the same
// transaction as the statement, so nothing can change the rows between check and
// write, and a failed check rolls the statement back.
func (d *DB) write(ctx context.Context, w writeReq) (RowResult, error) {
	var res RowResult
	e := w.e
	ctx, cancel := context.WithTimeout(ctx, 2*d.db.BusyTimeout())
	defer cancel()
	if err := d.requireCaptured(ctx, w.op, e.Name); err != nil {
		return res, err
	}
	var rereadQ, postQ string
	if w.reread {
		rereadQ = rereadSQL(e)
		if w.readCond != "" {
			rereadQ += " AND " + w.readCond
		}
	}
	if w.post != "" {
		postQ = "SELECT " + truth(w.post) + " FROM " + capture.QuoteIdent(e.Name) + " WHERE " + rereadWhere(e)
	}
	// Prepare (or find prepared) before taking the writer: preparing needs the
	// writer connection, which the transaction then holds.
	sMain, sReread, sHead := d.prepared(ctx, w.stmt), d.prepared(ctx, rereadQ), d.prepared(ctx, store.HeadSQL)
	sPre, sPost := d.prepared(ctx, w.pre), d.prepared(ctx, postQ)
	err := d.writeTable(ctx, w.op, e.Name, func(tx *sql.Tx) error {
		q := wtx{ctx, tx}
		if w.pre != "" {
			var readable, writable int
			if err := q.row(sPre, w.pre, w.preArgs...).Scan(&readable, &writable); err != nil {
				if errors.Is(err, sql.ErrNoRows) {
					return rowNotFound(e.Name)
				}
				return err
			}
			if readable == 0 {
				return rowNotFound(e.Name) // as if it did not exist: its existence is not the token's to know
			}
			if writable == 0 {
				return forbidden(e.Name, w.op+" of this row")
			}
		}
		if w.returning {
			var ret []byte
			if err := q.row(sMain, w.stmt, w.args...).Scan(&ret); err != nil {
				if errors.Is(err, sql.ErrNoRows) {
					return rowNotFound(e.Name)
				}
				return err
			}
			var rargs []any
			if w.reread || w.post != "" {
				var err error
				if rargs, err = rereadArgs(e, ret); err != nil {
					return err
				}
			}
			if w.post != "" {
				var ok int
				err := q.row(sPost, postQ, append(append([]any(nil), w.postArgs...), rargs...)...).Scan(&ok)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return err
				}
				// A row a trigger removed again has nothing to protect, but it cannot be
				// shown to meet the rule either: refused, as the rule is the contract.
				if ok == 0 {
					return forbidden(e.Name, "the row as written")
				}
			}
			if w.reread {
				var row []byte
				err := q.row(sReread, rereadQ, append(append([]any(nil), rargs...), w.readArgs...)...).Scan(&row)
				switch {
				case errors.Is(err, sql.ErrNoRows): // a trigger removed it again, or the token cannot read it: row null
				case err != nil:
					return err
				default:
					res.Row = capture.AppendRowJSON(nil, row)
				}
			}
		} else {
			r, err := q.exec(sMain, w.stmt, w.args...)
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

// preCheck is the statement that reads whether the token may read and write the row
// keyed by where (with args), and its arguments; "" when both rules allow every row.
func preCheck(e *capture.Table, where string, args []any, g Guard) (string, []any, error) {
	rc, rargs, err := g.Read.cond(e)
	if err != nil {
		return "", nil, err
	}
	wc, wargs, err := g.Write.cond(e)
	if err != nil {
		return "", nil, err
	}
	if rc == "" && wc == "" {
		return "", nil, nil
	}
	q := "SELECT " + truth(rc) + ", " + truth(wc) + " FROM " + capture.QuoteIdent(e.Name) + " WHERE " + where
	all := make([]any, 0, len(rargs)+len(wargs)+len(args))
	return q, append(append(append(all, rargs...), wargs...), args...), nil
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
	return d.With(Guard{}).CreateRow(ctx, table, vals)
}

// CreateRow is DB.CreateRow of a row the write rule allows (as stored, after
// triggers); the row is answered as null when the read rule does not allow it.
func (g Guarded) CreateRow(ctx context.Context, table string, vals Values) (RowResult, error) {
	d := g.d
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
	w := writeReq{op: "create row", e: e, stmt: b.String(), args: args, returning: true, reread: true}
	if err := g.postConds(e, &w); err != nil {
		return res, err
	}
	return d.write(ctx, w)
}

// postConds sets the checks a write's new row goes through: the write rule it must
// meet and the read rule that decides whether it is answered.
func (g Guarded) postConds(e *capture.Table, w *writeReq) error {
	var err error
	if w.post, w.postArgs, err = g.g.Write.cond(e); err != nil {
		return err
	}
	w.readCond, w.readArgs, err = g.g.Read.cond(e)
	return err
}

// UpdateRow sets the given columns of the row whose key parts are key, and returns it
// as stored with the seq of the last change the update made.
func (d *DB) UpdateRow(ctx context.Context, table string, key []string, vals Values) (RowResult, error) {
	return d.With(Guard{}).UpdateRow(ctx, table, key, vals)
}

// UpdateRow is DB.UpdateRow of a row the token may read (else not found) and write
// (else forbidden), into a row the write rule allows (else forbidden, rolled back).
func (g Guarded) UpdateRow(ctx context.Context, table string, key []string, vals Values) (RowResult, error) {
	d := g.d
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
	w := writeReq{op: "update row", e: e, stmt: stmt, args: append(args, kargs...), returning: true, reread: true}
	if w.pre, w.preArgs, err = preCheck(e, where, kargs, g.g); err != nil {
		return res, err
	}
	if err := g.postConds(e, &w); err != nil {
		return res, err
	}
	return d.write(ctx, w)
}

// DeleteRow deletes the row whose key parts are key and returns the seq of the last
// change the delete made.
func (d *DB) DeleteRow(ctx context.Context, table string, key []string) (int64, error) {
	return d.With(Guard{}).DeleteRow(ctx, table, key)
}

// DeleteRow is DB.DeleteRow of a row the token may read (else not found) and write
// (else forbidden).
func (g Guarded) DeleteRow(ctx context.Context, table string, key []string) (int64, error) {
	d := g.d
	e, err := d.lookup(table)
	if err != nil {
		return 0, err
	}
	where, args, err := keyWhere(e, key)
	if err != nil {
		return 0, err
	}
	w := writeReq{op: "delete row", e: e, stmt: "DELETE FROM " + capture.QuoteIdent(e.Name) + " WHERE " + where, args: args}
	if w.pre, w.preArgs, err = preCheck(e, where, args, g.g); err != nil {
		return 0, err
	}
	res, err := d.write(ctx, w)
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
	return "SELECT " + e.RowJSON(nil) + " FROM " + capture.QuoteIdent(e.Name) + " WHERE " + rereadWhere(e)
}

// rereadWhere selects the row a write's RETURNING clause identified.
func rereadWhere(e *capture.Table) string {
	if e.HasRowid() {
		return e.RowidName + " = ?"
	}
	terms := make([]string, len(e.PrimaryKey))
	for i, k := range e.PrimaryKey {
		terms[i] = capture.QuoteIdent(k) + " IS ?"
	}
	return strings.Join(terms, " AND ")
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
