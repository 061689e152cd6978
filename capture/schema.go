package capture

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"

	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/store"
)

// Table is a tracked table's live schema with what trigger generation, REST reads and
// REST writes need beyond models.Table.
type Table struct {
	models.Table
	// RowidName is a name that reaches the rowid without being shadowed by a column
	// ("rowid", "_rowid_" or "oid"); "" for a WITHOUT ROWID table, or when columns
	// shadow all three.
	RowidName string
	aliasCol  string       // the INTEGER PRIMARY KEY column that aliases the rowid, if any
	uniques   [][]indexCol // UNIQUE indexes other than the primary key
}

// indexCol is a column of an index with the collation the index compares it by.
type indexCol struct{ name, coll string }

// HasRowid reports whether rows can be found again by rowid: a rowid table whose
// rowid some name still reaches.
func (t *Table) HasRowid() bool { return !t.WithoutRowid && t.RowidName != "" }

// Ref resolves a column name from a request to its SQL reference and its column (nil
// for the rowid of a table without a declared key, which REST shows as RowidKey). A
// name the table does not have is unknown_column: names from requests are only ever
// matched against the schema, never put into SQL.
func (t *Table) Ref(name string) (string, *models.Column, error) {
	if c := t.Column(name); c != nil {
		return QuoteIdent(c.Name), c, nil
	}
	if rk := t.RowidKey; rk != "" && name == rk {
		return rk, nil, nil // one of three fixed spellings, safe unquoted
	}
	// Names in messages go through errors.Clip: a request may carry a column name of
	// nearly a megabyte, and an error must not echo it back whole.
	return "", nil, errors.WithCode(errors.Invalid, errors.CodeUnknownColumn, "unknown column %q in table %q", errors.Clip(name), errors.Clip(t.Name))
}

// Collation is the collating sequence column name compares text with, upper-cased
// ("BINARY", "NOCASE", "RTRIM" or an application's own), and whether it is known.
func (t *Table) Collation(name string) (string, bool) {
	if t.Collations == nil {
		return "", false
	}
	if c, ok := t.Collations[name]; ok {
		return c, true
	}
	return "BINARY", true
}

// capturable is why the capture triggers cannot key t's rows, or nil.
func (t *Table) capturable() error {
	if len(t.PrimaryKey) == 0 && t.RowidName == "" {
		return fmt.Errorf("table %q: columns shadow rowid, _rowid_ and oid; declare a primary key", t.Name)
	}
	return nil
}

// UserTables lists ordinary tables of the main schema that sqlws may track: not
// sqlite_* or sqlws_* internals, not virtual tables or their shadow tables.
func UserTables(ctx context.Context, q store.Querier) ([]string, error) {
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
func introspect(ctx context.Context, q store.Querier, name string) (*Table, error) {
	e := &Table{Table: models.Table{Name: name, PrimaryKey: []string{}}}
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
		return nil, unknownTable(name)
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
	if e.Collations, err = readCollations(ctx, q, name, e.Columns); err != nil {
		return nil, err
	}
	if !e.WithoutRowid {
		e.RowidName = rowidAlias(e.Columns)
	}
	if len(e.PrimaryKey) == 0 {
		e.RowidKey = e.RowidName
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

// readCollations reads the columns' declared collations from the table's CREATE
// TABLE text (declaredCollations); nil when they cannot be read reliably.
func readCollations(ctx context.Context, q store.Querier, table string, cols []models.Column) (map[string]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?`, table)
	if err != nil {
		return nil, fmt.Errorf("introspect %q: %w", table, err)
	}
	defer rows.Close()
	var text sql.NullString
	if rows.Next() {
		if err := rows.Scan(&text); err != nil {
			return nil, fmt.Errorf("introspect %q: %w", table, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("introspect %q: %w", table, err)
	}
	if !text.Valid {
		return nil, nil
	}
	colls, ok := declaredCollations(text.String, cols)
	if !ok {
		return nil, nil
	}
	return colls, nil
}

func countPKIndexes(ctx context.Context, q store.Querier, table string) (int, error) {
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

// uniqueIndexes lists the column lists of a table's UNIQUE indexes, other than its
// primary key. Indexes on expressions are left out: their conflicts cannot be found by
// comparing columns.
func uniqueIndexes(ctx context.Context, q store.Querier, table string) ([][]indexCol, error) {
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

// tableExists fails with unknown_table unless table is an ordinary table sqlws could
// capture.
func tableExists(ctx context.Context, q store.Querier, table string) error {
	all, err := UserTables(ctx, q)
	if err != nil {
		return err
	}
	for _, t := range all {
		if t == table {
			return nil
		}
	}
	return unknownTable(table)
}

func unknownTable(name string) error {
	return errors.WithCode(errors.NotFound, errors.CodeUnknownTable, "unknown table %q", errors.Clip(name))
}

// QuoteIdent quotes an SQL identifier; any character but NUL is allowed inside.
func QuoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// QuoteLiteral quotes an SQL string literal.
func QuoteLiteral(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}
