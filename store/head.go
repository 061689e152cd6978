package store

import (
	"context"
	"database/sql"
)

// HeadSQL reads the last seq the changelog assigned: its newest row, which nothing
// deletes (migration 00004). It lives here, with the migrations that define the
// changelog, because every layer above reads it: capture records dropped tables at
// the head, the changelog reports it, and REST reads it in the transaction of every
// read and write. A scalar subquery, so that a caller can append columns.
const HeadSQL = `SELECT coalesce((SELECT max(seq) FROM sqlws_changes), 0)`

// RowQuerier runs a query that returns one row: a pool, a connection or a
// transaction.
type RowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Head returns the last assigned seq (HeadSQL) using q, so a caller can read it in
// the same transaction as the rows it returns.
func Head(ctx context.Context, q RowQuerier) (int64, error) {
	var h int64
	if err := q.QueryRowContext(ctx, HeadSQL).Scan(&h); err != nil {
		return 0, Classify("read changelog head", err)
	}
	return h, nil
}
