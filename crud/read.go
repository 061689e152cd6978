package crud

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/filter"
	"github.com/sqlws/sqlws/query"
	"github.com/sqlws/sqlws/store"
)

// TableInfos returns every tracked table's schema with its row count.
func (d *DB) TableInfos(ctx context.Context) ([]TableInfo, error) {
	return d.VisibleTableInfos(ctx, func(string) (Rule, bool) { return Rule{}, true })
}

// VisibleTableInfos is TableInfos of the tables visible reports readable, each
// with the count of the rows its rule allows (a count of every row would tell a
// token how many rows others have).
func (d *DB) VisibleTableInfos(ctx context.Context, visible func(table string) (Rule, bool)) ([]TableInfo, error) {
	all := d.schema.Tables()
	tables := all[:0:0]
	var conds []string
	var condArgs [][]any
	for _, t := range all {
		r, ok := visible(t.Name)
		if !ok {
			continue
		}
		e, found := d.schema.Table(t.Name)
		if !found {
			continue
		}
		c, args, err := r.cond(e)
		if err != nil {
			return nil, err
		}
		tables = append(tables, t)
		conds = append(conds, c)
		condArgs = append(condArgs, args)
	}
	out := make([]TableInfo, 0, len(tables))
	err := d.read(ctx, "list tables", "", func(tx *sql.Tx) error {
		for i, t := range tables {
			var n int64
			q := "SELECT count(*) FROM " + capture.QuoteIdent(t.Name)
			if conds[i] != "" {
				q += " WHERE " + conds[i]
			}
			if err := tx.QueryRowContext(ctx, q, condArgs[i]...).Scan(&n); err != nil {
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
	return d.With(Guard{}).GetRow(ctx, table, key)
}

// GetRow is DB.GetRow of a row the read rule allows: any other is not found, as if
// it did not exist.
func (g Guarded) GetRow(ctx context.Context, table string, key []string) (RowResult, error) {
	d := g.d
	var res RowResult
	e, err := d.lookup(table)
	if err != nil {
		return res, err
	}
	where, args, err := keyWhere(e, key)
	if err != nil {
		return res, err
	}
	rc, rargs, err := g.g.Read.cond(e)
	if err != nil {
		return res, err
	}
	if rc != "" {
		where += " AND " + rc
		args = append(args, rargs...)
	}
	q := "SELECT " + e.RowJSON(nil) + " FROM " + capture.QuoteIdent(e.Name) + " WHERE " + where + " LIMIT 1"
	err = d.read(ctx, "get row", e.Name, func(tx *sql.Tx) error {
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

// ListRows reads one page of a table: the rows matching q's filters in q's order, then
// key order, after q's cursor; and the changelog head in the same transaction.
func (d *DB) ListRows(ctx context.Context, table string, q query.Query) (Page, error) {
	return d.With(Guard{}).ListRows(ctx, table, q)
}

// ListRows is DB.ListRows of the rows the read rule allows: the rule is ANDed into
// the query's WHERE (before the cursor's condition), so pages and cursors work as
// for any filter.
func (g Guarded) ListRows(ctx context.Context, table string, q query.Query) (Page, error) {
	d := g.d
	var page Page
	e, err := d.lookup(table)
	if err != nil {
		return page, err
	}
	qs, err := query.Compile(q, e)
	if err != nil {
		return page, err
	}
	rc, rargs, err := g.g.Read.cond(e)
	if err != nil {
		return page, err
	}
	if rc != "" {
		qs.Where = append(qs.Where, rc)
		qs.Args = append(qs.Args, rargs...)
	}
	if q.After != "" {
		vals, err := decodeCursor(q.After, len(qs.Sort))
		if err != nil {
			return page, err
		}
		qs.After(vals)
	}
	// ParseQuery bounds filters and order; this bounds what a hand-built Query or a
	// table with a very wide key could still bind, below SQLite's limit.
	if len(qs.Args) >= maxQueryArgs {
		return page, errors.WithCode(errors.Invalid, errors.CodeBadRequest, "the query would bind %d values; at most %d", len(qs.Args)+1, maxQueryArgs)
	}

	// Each row comes with its sort-key values, encoded as row values are, for the
	// next page's cursor.
	var b strings.Builder
	b.WriteString("SELECT ")
	b.WriteString(e.RowJSON(qs.Select))
	b.WriteString(", json_array(")
	for i, s := range qs.Sort {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(capture.ValueExpr(s.Ref, capture.AffBlob)) // the class order only affects speed
	}
	b.WriteString(") FROM ")
	b.WriteString(capture.QuoteIdent(e.Name))
	if len(qs.Where) > 0 {
		b.WriteString(" WHERE ")
		b.WriteString(strings.Join(qs.Where, " AND "))
	}
	b.WriteString(" ORDER BY ")
	b.WriteString(qs.OrderBy())
	b.WriteString(" LIMIT ?")
	limit := qs.Limit
	args := append(qs.Args, limit+1)
	stmt := b.String()

	err = d.read(ctx, "list rows", e.Name, func(tx *sql.Tx) error {
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

// ChangesSince reads the changes after since for GET /api/changes: up to limit of
// them (at most about maxBytes), with the changelog's head and oldest retained seq,
// in one read transaction.
func (d *DB) ChangesSince(ctx context.Context, since int64, limit, maxBytes int) (changelog.Page, error) {
	return d.log.Since(ctx, since, limit, maxBytes)
}

// Filter compiles a where and select over table for GET /api/changes, against the
// table's schema as it is at seq head (filter.Compile).
func (d *DB) Filter(table, where, sel string, head int64) (*filter.Filter, error) {
	t, err := d.lookup(table)
	if err != nil {
		return nil, err
	}
	return filter.Compile(t, where, sel, head)
}
