package db

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"

	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
)

// schemaEntry is a tracked table with what trigger generation and CRUD need.
type schemaEntry struct {
	models.Table
	rowidName string       // an unshadowed name for the rowid ("rowid", "_rowid_" or "oid"), "" for WITHOUT ROWID
	aliasCol  string       // the INTEGER PRIMARY KEY column that aliases the rowid, if any
	uniques   [][]indexCol // UNIQUE indexes other than the primary key
}

// indexCol is a column of an index with the collation the index compares it by.
type indexCol struct{ name, coll string }

// querier is what schema reads need: a pool, a connection or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// userTables lists ordinary tables of the main schema that sqlws may track: not
// sqlite_* or sqlws_* internals, not virtual tables or their shadow tables.
func userTables(ctx context.Context, q querier) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT name FROM pragma_table_list
		WHERE schema = 'main' AND type = 'table'
		AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE 'sqlws\_%' ESCAPE '\'`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

// introspect reads one table's live schema.
func introspect(ctx context.Context, q querier, name string) (*schemaEntry, error) {
	e := &schemaEntry{Table: models.Table{Name: name, PrimaryKey: []string{}}}
	rows, err := q.QueryContext(ctx, `SELECT wr, strict FROM pragma_table_list WHERE schema = 'main' AND name = ?`, name)
	if err != nil {
		return nil, fmt.Errorf("introspect %q: %w", name, err)
	}
	found := false
	for rows.Next() {
		found = true
		if err := rows.Scan(&e.WithoutRowid, &e.Strict); err != nil {
			rows.Close()
			return nil, fmt.Errorf("introspect %q: %w", name, err)
		}
	}
	rows.Close()
	if !found {
		return nil, errors.WithCode(errors.NotFound, errors.CodeUnknownTable, "unknown table %q", name)
	}

	rows, err = q.QueryContext(ctx, `SELECT name, type, "notnull", dflt_value, pk, hidden FROM pragma_table_xinfo(?) ORDER BY cid`, name)
	if err != nil {
		return nil, fmt.Errorf("introspect %q columns: %w", name, err)
	}
	defer rows.Close()
	type pkcol struct {
		pos  int
		name string
	}
	var pks []pkcol
	for rows.Next() {
		var c models.Column
		var dflt sql.NullString
		var hidden int
		if err := rows.Scan(&c.Name, &c.Type, &c.NotNull, &dflt, &c.PK, &hidden); err != nil {
			return nil, fmt.Errorf("introspect %q columns: %w", name, err)
		}
		if hidden == 1 { // hidden columns of virtual tables
			continue
		}
		if dflt.Valid {
			c.Default = &dflt.String
		}
		c.Generated = hidden >= 2
		if c.PK > 0 {
			pks = append(pks, pkcol{c.PK, c.Name})
		}
		e.Columns = append(e.Columns, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("introspect %q columns: %w", name, err)
	}
	sort.Slice(pks, func(i, j int) bool { return pks[i].pos < pks[j].pos })
	for _, p := range pks {
		e.PrimaryKey = append(e.PrimaryKey, p.name)
	}
	if !e.WithoutRowid {
		e.rowidName = rowidAlias(e.Columns)
	}
	if len(e.PrimaryKey) == 0 {
		e.RowidKey = e.rowidName
	}
	if e.uniques, err = uniqueIndexes(ctx, q, name); err != nil {
		return nil, err
	}
	if !e.WithoutRowid && len(e.PrimaryKey) == 1 {
		// A one-column primary key of a rowid table is the rowid itself exactly when
		// SQLite made no index for it (INTEGER PRIMARY KEY, but not the DESC quirk).
		n, err := countPKIndexes(ctx, q, name)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			e.aliasCol = e.PrimaryKey[0]
		}
	}
	return e, nil
}

func countPKIndexes(ctx context.Context, q querier, table string) (int, error) {
	rows, err := q.QueryContext(ctx, `SELECT count(*) FROM pragma_index_list(?) WHERE origin = 'pk'`, table)
	if err != nil {
		return 0, fmt.Errorf("introspect %q indexes: %w", table, err)
	}
	defer rows.Close()
	n := 0
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, fmt.Errorf("introspect %q indexes: %w", table, err)
		}
	}
	return n, rows.Err()
}

// valueKind is what a column can hold, as far as the capture triggers care.
type valueKind uint8

const (
	kindAny     valueKind = iota // any storage class: the triggers dispatch on typeof
	kindInteger                  // INTEGER or NULL: written as it is
	kindText                     // TEXT or NULL: written as it is, minus a JSON subtype
)

// valueKind reports what column col can hold: the rowid alias only integers, and
// INT/INTEGER and TEXT columns of a STRICT table only that type (or NULL), unless
// generated. The triggers skip valueExpr's type dispatch for those, which makes the
// trigger program smaller and every captured write cheaper.
func (e *schemaEntry) valueKind(col string) valueKind {
	if col == e.aliasCol && col != "" {
		return kindInteger
	}
	if !e.Strict {
		return kindAny
	}
	c := e.Column(col)
	if c == nil || c.Generated {
		return kindAny // SQLite does not type-check generated columns, even in STRICT tables
	}
	switch strings.ToUpper(c.Type) {
	case "INT", "INTEGER":
		return kindInteger
	case "TEXT":
		return kindText
	}
	return kindAny
}

// uniqueIndexes lists the column lists of a table's UNIQUE indexes, other than its
// primary key. Indexes on expressions are left out: their conflicts cannot be found by
// comparing columns.
func uniqueIndexes(ctx context.Context, q querier, table string) ([][]indexCol, error) {
	rows, err := q.QueryContext(ctx, `SELECT name FROM pragma_index_list(?) WHERE "unique" = 1 AND origin != 'pk' ORDER BY name`, table)
	if err != nil {
		return nil, fmt.Errorf("introspect %q indexes: %w", table, err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("introspect %q indexes: %w", table, err)
		}
		names = append(names, n)
	}
	rows.Close()
	var out [][]indexCol
	for _, idx := range names {
		rows, err := q.QueryContext(ctx, `SELECT cid, coalesce(name, ''), coalesce(coll, 'BINARY') FROM pragma_index_xinfo(?) WHERE key = 1 ORDER BY seqno`, idx)
		if err != nil {
			return nil, fmt.Errorf("introspect index %q: %w", idx, err)
		}
		var cols []indexCol
		expr := false
		for rows.Next() {
			var cid int
			var col, coll string
			if err := rows.Scan(&cid, &col, &coll); err != nil {
				rows.Close()
				return nil, fmt.Errorf("introspect index %q: %w", idx, err)
			}
			if cid < 0 {
				expr = true
			}
			cols = append(cols, indexCol{col, coll})
		}
		rows.Close()
		if expr || len(cols) == 0 {
			continue
		}
		out = append(out, cols)
	}
	return out, nil
}

// rowidAlias returns a name that reaches the rowid: a column may shadow "rowid", so try
// SQLite's other two spellings. "" if all three are shadowed.
func rowidAlias(cols []models.Column) string {
	for _, cand := range []string{"rowid", "_rowid_", "oid"} {
		shadowed := false
		for _, c := range cols {
			if strings.EqualFold(c.Name, cand) {
				shadowed = true
				break
			}
		}
		if !shadowed {
			return cand
		}
	}
	return ""
}

// Tables returns the live schema of every tracked table, sorted by name.
func (d *DB) Tables() []models.Table {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]models.Table, 0, len(d.tables))
	for _, e := range d.tables {
		out = append(out, e.Table)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Table returns the live schema of a tracked table.
func (d *DB) Table(name string) (models.Table, bool) {
	e, ok := d.entry(name)
	if !ok {
		return models.Table{}, false
	}
	return e.Table, true
}

// Tracked reports whether name is a tracked table.
func (d *DB) Tracked(name string) bool {
	_, ok := d.entry(name)
	return ok
}

func (d *DB) entry(name string) (*schemaEntry, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	e, ok := d.tables[name]
	return e, ok
}

// quoteIdent quotes an SQL identifier; any character but NUL is allowed inside.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quoteLiteral quotes an SQL string literal.
func quoteLiteral(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}
