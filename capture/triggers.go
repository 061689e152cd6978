package capture

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/sqlws/sqlws/store"
)

// The capture triggers must run in every SQLite that writes to a served database, the
// Debian sqlite3 3.40 CLI included, so they use only SQL that 3.40 has: no jsonb_*, no
// unixepoch('subsec'), no application-defined functions. Every value goes through
// valueExpr (encode.go).

// tsExpr is the statement's wall clock in unix milliseconds, rounded. julianday()
// without an argument reads the clock SQLite fixed for the statement directly;
// julianday('now') parses its argument first, and that parse was a sixth of the
// whole cost of capturing a row (the writer's cost, measured by BenchmarkCapture).
const tsExpr = `CAST((julianday() - 2440587.5) * 86400000 + 0.5 AS INTEGER)`

// triggerName is the name of sqlws's trigger for op on table.
func triggerName(table, op string) string { return "sqlws_" + op + "_" + table }

// triggerSQL generates the capture triggers of a table, keyed by trigger name: AFTER
// INSERT, UPDATE and DELETE, plus, for a rowid table with UNIQUE indexes, BEFORE INSERT
// and UPDATE triggers that make REPLACE conflict deletes visible (see replaceSQL).
// With a shape id (sid > 0) the AFTER triggers write the native layout (native.go);
// without, row images as JSON (encode.go).
func triggerSQL(t *Table, sid int64) (map[string]string, error) {
	if err := t.capturable(); err != nil {
		return nil, err
	}
	tbl := QuoteLiteral(t.Name)
	on := QuoteIdent(t.Name)
	record := func(op, pk, old, new string) string {
		return "INSERT INTO sqlws_changes (tbl, op, pk, old, new, ts) VALUES (" +
			tbl + ", '" + op + "', " + pk + ", " + old + ", " + new + ", " + tsExpr + "); "
	}
	out := map[string]string{}
	mk := func(name, when, event, body string) {
		out[name] = "CREATE TRIGGER " + QuoteIdent(name) + " " + when + " " + event + " ON " + on +
			" FOR EACH ROW BEGIN " + body + "END"
	}
	rp := replaceSQL(t)
	if rp.beforeInsert != "" {
		mk(triggerName(t.Name, "replace_insert"), "BEFORE", "INSERT", rp.beforeInsert)
		mk(triggerName(t.Name, "replace_update"), "BEFORE", "UPDATE", rp.beforeUpdate)
	}
	if sid > 0 {
		mk(triggerName(t.Name, "insert"), "AFTER", "INSERT", rp.afterInsert+nativeRecord(t, sid, "insert"))
		mk(triggerName(t.Name, "update"), "AFTER", "UPDATE", rp.afterUpdate+nativeRecord(t, sid, "update"))
		mk(triggerName(t.Name, "delete"), "AFTER", "DELETE", nativeRecord(t, sid, "delete"))
		return out, nil
	}
	mk(triggerName(t.Name, "insert"), "AFTER", "INSERT", rp.afterInsert+record("insert", keyExpr(t), "NULL", rowExpr(t, "NEW")))
	mk(triggerName(t.Name, "update"), "AFTER", "UPDATE", rp.afterUpdate+record("update", keyExpr(t), rowExpr(t, "OLD"), rowExpr(t, "NEW")))
	mk(triggerName(t.Name, "delete"), "AFTER", "DELETE", record("delete", keyExpr(t), rowExpr(t, "OLD"), "NULL"))
	return out, nil
}

// replaceStmts are the trigger statements that capture REPLACE conflict deletes.
type replaceStmts struct {
	beforeInsert, beforeUpdate string // note the rows the new row collides with
	afterInsert, afterUpdate   string // report the noted rows that are gone
}

// replaceSQL returns the statements that capture rows removed by REPLACE conflict
// resolution. SQLite fires no DELETE trigger for those (unless the writer enabled
// recursive_triggers), so: before a row is inserted or updated, note every other row
// that has the same values in one of the table's UNIQUE indexes (and, for an update,
// the row at the rowid it moves to); after it, report as deleted each noted row that
// is gone, or whose rowid the updated row now holds. Noting a row that does not really
// conflict (a partial index, say) is harmless: it is still there afterwards and is not
// reported. Scratch rows of a statement that did not complete (IGNORE, an upsert) are
// cleared by the next BEFORE trigger. Only rowid tables: WITHOUT ROWID tables have no
// cheap stable row identity to check. Empty when the table has no UNIQUE index.
func replaceSQL(t *Table) replaceStmts {
	if t.WithoutRowid || t.RowidName == "" || len(t.uniques) == 0 {
		return replaceStmts{}
	}
	tbl := QuoteLiteral(t.Name)
	rid := func(alias string) string { return alias + "." + t.RowidName }
	var cond []string
	for _, cols := range t.uniques {
		var eq []string
		for _, c := range cols {
			// The index's collation decides what conflicts, not the column's.
			eq = append(eq, "sqlws_c."+QuoteIdent(c.name)+" = NEW."+QuoteIdent(c.name)+" COLLATE "+QuoteIdent(c.coll))
		}
		cond = append(cond, "("+strings.Join(eq, " AND ")+")")
	}
	note := func(where string) string {
		return "DELETE FROM sqlws_pending WHERE tbl = " + tbl + "; " +
			"INSERT INTO sqlws_pending (tbl, rid, pk, old) SELECT " + tbl + ", " + rid("sqlws_c") + ", " +
			keyExpr(t) + ", " + rowExpr(t, "sqlws_c") + " FROM " + QuoteIdent(t.Name) + " AS sqlws_c" +
			" WHERE " + where + "; "
	}
	report := func(extra string) string {
		return "INSERT INTO sqlws_changes (tbl, op, pk, old, new, ts) SELECT p.tbl, 'delete', p.pk, p.old, NULL, " + tsExpr +
			" FROM sqlws_pending AS p WHERE p.tbl = " + tbl +
			" AND (NOT EXISTS (SELECT 1 FROM " + QuoteIdent(t.Name) + " AS sqlws_c WHERE " + rid("sqlws_c") + " = p.rid)" + extra + ")" +
			" ORDER BY p.rowid; " +
			"DELETE FROM sqlws_pending WHERE tbl = " + tbl + "; "
	}
	unique := strings.Join(cond, " OR ")
	return replaceStmts{
		beforeInsert: note("(" + unique + ")"),
		beforeUpdate: note(rid("sqlws_c") + " != " + rid("OLD") + " AND (" + rid("sqlws_c") + " = " + rid("NEW") + " OR " + unique + ")"),
		afterInsert:  report(""),
		afterUpdate:  report(" OR p.rid = " + rid("NEW")),
	}
}

// trigger is an existing sqlws trigger: the table it is on and its SQL.
type trigger struct{ table, sql string }

func existingTriggers(ctx context.Context, q store.Querier) (map[string]trigger, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'sqlws\_%' ESCAPE '\'`)
	if err != nil {
		return nil, fmt.Errorf("list triggers: %w", err)
	}
	defer rows.Close()
	out := map[string]trigger{}
	for rows.Next() {
		var name, table string
		var s sql.NullString
		if err := rows.Scan(&name, &table, &s); err != nil {
			return nil, fmt.Errorf("list triggers: %w", err)
		}
		out[name] = trigger{table, s.String}
	}
	return out, rows.Err()
}
