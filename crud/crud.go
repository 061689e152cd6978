// Package crud is REST's data access: it reads and writes the rows of the tracked
// tables — one row by key, a page of a list query, a table's row count, an insert,
// update or delete — each in one transaction that also reads the changelog head, so
// a client can load rows and then subscribe from exactly where they left off. Table
// and column names come from the live schema (capture.Schema), never from the
// request; every value is a bound parameter. Rows leave SQLite already encoded by the
// capture triggers' own expressions, so a REST row and the change that wrote it are
// the same JSON.
package crud

import (
	"context"
	"database/sql"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/query"
	"github.com/sqlws/sqlws/store"
)

// DB serves REST's reads and writes of one database.
type DB struct {
	db     *store.DB
	schema *capture.Schema
	log    *changelog.Log
	stmts  stmtCache // prepared write statements on the writer
}

// New returns the CRUD layer over db's tracked tables, as schema shows them, with log
// for GET /api/changes.
func New(db *store.DB, schema *capture.Schema, log *changelog.Log) *DB {
	return &DB{db: db, schema: schema, log: log, stmts: stmtCache{m: map[string]*sql.Stmt{}}}
}

// Close closes the prepared statements. The store outlives the DB.
func (d *DB) Close() { d.stmts.close() }

// Table returns the live schema of a tracked table.
func (d *DB) Table(name string) (models.Table, bool) {
	t, ok := d.schema.Table(name)
	if !ok {
		return models.Table{}, false
	}
	return t.Table, true
}

// Tables returns the live schema of every tracked table, sorted by name.
func (d *DB) Tables() []models.Table { return d.schema.Tables() }

// StreamID identifies the database's change stream.
func (d *DB) StreamID() string { return d.db.StreamID() }

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

func (d *DB) lookup(name string) (*capture.Table, error) {
	e, ok := d.schema.Table(name)
	if !ok {
		return nil, unknownTable(name)
	}
	return e, nil
}

// read is store.DB.Read for statements on table (see classify).
func (d *DB) read(ctx context.Context, op, table string, fn func(tx *sql.Tx) error) error {
	return classify(op, table, d.db.Read(ctx, op, fn))
}

// writeTable is store.DB.Write for statements on table (see classify).
func (d *DB) writeTable(ctx context.Context, op, table string, fn func(tx *sql.Tx) error) error {
	return classify(op, table, d.db.Write(ctx, op, fn))
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
		args[i] = query.BindText(e, e.Column(k), key[i])
	}
	return strings.Join(terms, " AND "), args, nil
}
