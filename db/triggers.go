package db

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/store"
)

// The capture triggers must run in every SQLite that writes to a served database, the
// Debian sqlite3 3.40 CLI included, so they use only SQL that 3.40 has: no jsonb_*, no
// unixepoch('subsec'), no application-defined functions. json_object fails on a BLOB
// and 3.40 prints REALs with 15 digits and infinity as the invalid token Inf, so every
// value goes through valueExpr.

// tsExpr is the statement's wall clock in unix milliseconds, rounded. julianday()
// without an argument reads the clock SQLite fixed for the statement directly;
// julianday('now') parses its argument first, and that parse was a sixth of the
// whole cost of capturing a row (W5, BenchmarkCapture).
const tsExpr = `CAST((julianday() - 2440587.5) * 86400000 + 0.5 AS INTEGER)`

// valueExpr encodes column reference ref losslessly as a JSON value: INTEGER and TEXT
// as json_object writes them, REAL exactly (realExpr), infinities and BLOBs as tagged
// objects. NULL is null. Readers pass images through models.AppendRowJSON.
//
// It tests the storage classes in the order aff makes likely (the class the column's
// affinity stores first): every test is a string comparison each captured row pays.
// Tagged values are built as JSON text and parsed once by json(), not from nested
// json_object calls: each function call takes its own registers, and a trigger's
// registers are allocated and released for every row it captures, taken branch or
// not. Both cut the writer's cost of capture (W5, BenchmarkCapture).
func valueExpr(ref string, aff affinity) string {
	var b strings.Builder
	b.WriteString("CASE typeof(" + ref + ")")
	for _, class := range classOrder(aff) {
		b.WriteString(" WHEN '" + class + "' THEN ")
		switch class {
		case "integer":
			b.WriteString(ref)
		case "text":
			b.WriteString(textExpr(ref))
		case "real":
			b.WriteString(realExpr(ref))
		case "blob":
			b.WriteString("json(" + blobText(ref) + ")")
		}
	}
	b.WriteString(" ELSE " + ref + " END") // NULL
	return b.String()
}

// classOrder is the order in which valueExpr tests the storage classes of a column
// with affinity aff (https://sqlite.org/datatype3.html): TEXT affinity stores numbers
// as text, REAL affinity integers as REAL.
func classOrder(aff affinity) []string {
	switch aff {
	case affText:
		return []string{"text", "blob", "integer", "real"}
	case affReal:
		return []string{"real", "text", "integer", "blob"}
	}
	return []string{"integer", "text", "real", "blob"}
}

// realExpr is REAL ref as an exact JSON value: ref itself where SQLite's own rendering
// is exact (json_object writes it with 15 significant digits), else JSON text.
func realExpr(ref string) string {
	return `CASE WHEN ` + realPlain(ref) + ` THEN ` + ref + ` ELSE json(` + realTagged(ref) + `) END`
}

// realText is realExpr as JSON text, for building objects by concatenation (CAST AS
// TEXT writes the same 15 digits as json_object).
func realText(ref string) string {
	return `CASE WHEN ` + realPlain(ref) + ` THEN CAST(` + ref + ` AS TEXT) ELSE ` + realTagged(ref) + ` END`
}

// realPlain is true when SQLite's own rendering of REAL ref (15 significant digits) is
// exact without checking it: a whole number below 10^15, such as the 7.0 a REAL
// column makes of 7, which keeps its decimal point. Any other REAL goes through
// realTagged. A check that the 15 digits read back as the same double would be wrong:
// SQLite before 3.43 also reads decimals inexactly, and a value one unit off could
// pass it (seen at magnitudes of 1e±33 and beyond).
func realPlain(ref string) string {
	return `(abs(` + ref + `) < 1e15 AND ` + ref + ` = CAST(` + ref + ` AS INTEGER))`
}

// realTagged is SQL for the JSON text of a REAL ref: {"$ldexp":[y,k]} with y printed
// to 17 significant digits, which models.AppendRowJSON turns into the exact JSON
// number y·2^k, written as the shortest decimal that reads back as the same double
// (0.1, not 0.10000000000000001). Infinities get their own tag.
//
// SQLite before 3.43 prints doubles with long-double arithmetic that is exact only for
// moderate magnitudes (about 1e±100); beyond 2^±300 the trigger scales the value by an
// exact power of two first (k ≠ 0).
func realTagged(ref string) string {
	ldexp := func(scaled string, k int) string {
		return fmt.Sprintf(`'{"$ldexp":['||printf('%%!.17g',%s)||',%d]}'`, scaled, k)
	}
	return `CASE` +
		` WHEN ` + ref + ` = 9e999 THEN '{"$real":"Infinity"}'` +
		` WHEN ` + ref + ` = -9e999 THEN '{"$real":"-Infinity"}'` +
		` WHEN abs(` + ref + `)` + pow2(-600) + ` >= 1 THEN ` + ldexp(ref+pow2(-700), 700) +
		` WHEN abs(` + ref + `)` + pow2(-300) + ` >= 1 THEN ` + ldexp(ref+pow2(-300), 300) +
		` WHEN abs(` + ref + `)` + pow2(600) + ` <= 1 THEN ` + ldexp(ref+pow2(750), -750) +
		` WHEN abs(` + ref + `)` + pow2(300) + ` <= 1 THEN ` + ldexp(ref+pow2(300), -300) +
		` ELSE ` + ldexp(ref, 0) + ` END`
}

// blobText is SQL for the JSON text of BLOB ref: hex digits need no escaping.
func blobText(ref string) string { return `'{"$blob":"'||hex(` + ref + `)||'"}'` }

// textExpr is a TEXT reference without its JSON subtype. A value written as json(…)
// keeps that subtype in NEW while the trigger runs, and json_object would embed it as
// JSON instead of the string the table holds (and that later images, read from disk,
// show). Concatenation makes a new value without the subtype.
func textExpr(ref string) string { return `''||` + ref }

// pow2 is SQL that multiplies the preceding expression by 2^k exactly: a chain of
// multiplications or divisions by integer powers of two, each exact in binary floating
// point. Decimal literals are avoided because old SQLite parses them inexactly.
func pow2(k int) string {
	op := "*"
	if k < 0 {
		op, k = "/", -k
	}
	var b strings.Builder
	for ; k >= 60; k -= 60 {
		b.WriteString(op + "1152921504606846976")
	}
	if k > 0 {
		fmt.Fprintf(&b, "%s%d", op, int64(1)<<k)
	}
	return b.String()
}

// maxObjectPairs is the most key/value pairs one json_object call may take: SQLite
// before 3.48 allows at most 127 function arguments, and a trigger that breaks the
// limit makes the whole schema unreadable to those versions.
const maxObjectPairs = 63

// imageCol is one member of a row image: its key, the SQL that reads it, what the
// column can hold (see schemaEntry.valueKind) and its affinity.
type imageCol struct {
	key, ref string
	kind     valueKind
	aff      affinity
}

// objectExpr is SQL for a JSON object of cols: one json_object call when it fits,
// else text concatenation, which has no such limit.
func objectExpr(cols []imageCol) string {
	var b strings.Builder
	if len(cols) <= maxObjectPairs {
		b.WriteString("json_object(")
		for i, c := range cols {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(quoteLiteral(c.key))
			b.WriteString(",")
			switch c.kind {
			case kindInteger:
				b.WriteString(c.ref)
			case kindText:
				b.WriteString(textExpr(c.ref))
			default:
				b.WriteString(valueExpr(c.ref, c.aff))
			}
		}
		b.WriteString(")")
		return b.String()
	}
	b.WriteString("('{'")
	for i, c := range cols {
		sep := ","
		if i == 0 {
			sep = ""
		}
		b.WriteString("||")
		b.WriteString(quoteLiteral(sep + string(models.AppendJSONString(nil, c.key)) + ":"))
		b.WriteString("||")
		switch c.kind {
		case kindInteger:
			b.WriteString("json_quote(" + c.ref + ")") // 'null' for NULL, unlike CAST
		case kindText:
			b.WriteString("json_quote(" + textExpr(c.ref) + ")")
		default:
			b.WriteString(valueTextExpr(c.ref))
		}
	}
	b.WriteString("||'}')")
	return b.String()
}

// valueTextExpr is valueExpr as JSON text, for building objects by concatenation.
func valueTextExpr(ref string) string {
	return `CASE typeof(` + ref + `) WHEN 'integer' THEN CAST(` + ref + ` AS TEXT)` +
		` WHEN 'text' THEN json_quote(` + textExpr(ref) + `) WHEN 'null' THEN 'null'` +
		` WHEN 'real' THEN ` + realText(ref) + ` ELSE ` + blobText(ref) + ` END`
}

// rowExpr is a JSON object of every column of the row that alias (NEW or OLD) names.
// A table without a declared key has its rowid first, as REST rows do: it is the row's
// key, and an update may change it.
func rowExpr(t *schemaEntry, alias string) string {
	var cols []imageCol
	if len(t.PrimaryKey) == 0 {
		cols = append(cols, imageCol{t.rowidName, alias + "." + t.rowidName, kindInteger, affInteger})
	}
	for i := range t.Columns {
		c := &t.Columns[i]
		cols = append(cols, imageCol{c.Name, alias + "." + quoteIdent(c.Name), t.valueKind(c.Name), columnAffinity(c, t.Strict)})
	}
	return objectExpr(cols)
}

// keyExpr is what the triggers store as a change's key: a constant JSON array of the
// positions of the key columns among the row image's members (rowExpr's order), e.g.
// [0]. The reader builds the key object from the image (keyFromImage), which holds
// every key column, so the trigger does not encode the key values a second time:
// that was a fifth of capture's cost per written row. Each row carries the positions
// for the image it was written with, so schema changes cannot mismatch them. Keys of
// changes written before this format are JSON objects and are read as they are.
func keyExpr(t *schemaEntry) string {
	var pos []int
	if len(t.PrimaryKey) == 0 {
		pos = []int{0} // the rowid comes first in rowExpr
	}
	for _, k := range t.PrimaryKey {
		for i, c := range t.Columns {
			if c.Name == k {
				pos = append(pos, i)
			}
		}
	}
	b := []byte{'['}
	for i, p := range pos {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(p), 10)
	}
	return "'" + string(append(b, ']')) + "'"
}

// triggerName is the name of sqlws's trigger for op on table.
func triggerName(table, op string) string { return "sqlws_" + op + "_" + table }

// triggerSQL generates the capture triggers of a table, keyed by trigger name: AFTER
// INSERT, UPDATE and DELETE, plus, for a rowid table with UNIQUE indexes, BEFORE INSERT
// and UPDATE triggers that make REPLACE conflict deletes visible (see replaceSQL).
func triggerSQL(t *schemaEntry) (map[string]string, error) {
	if len(t.PrimaryKey) == 0 && t.rowidName == "" {
		return nil, fmt.Errorf("table %q: columns shadow rowid, _rowid_ and oid; declare a primary key", t.Name)
	}
	tbl := quoteLiteral(t.Name)
	on := quoteIdent(t.Name)
	record := func(op, pk, old, new string) string {
		return "INSERT INTO sqlws_changes (tbl, op, pk, old, new, ts) VALUES (" +
			tbl + ", '" + op + "', " + pk + ", " + old + ", " + new + ", " + tsExpr + "); "
	}
	out := map[string]string{}
	mk := func(name, when, event, body string) {
		out[name] = "CREATE TRIGGER " + quoteIdent(name) + " " + when + " " + event + " ON " + on +
			" FOR EACH ROW BEGIN " + body + "END"
	}
	rp := replaceSQL(t)
	if rp.beforeInsert != "" {
		mk(triggerName(t.Name, "replace_insert"), "BEFORE", "INSERT", rp.beforeInsert)
		mk(triggerName(t.Name, "replace_update"), "BEFORE", "UPDATE", rp.beforeUpdate)
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
func replaceSQL(t *schemaEntry) replaceStmts {
	if t.WithoutRowid || t.rowidName == "" || len(t.uniques) == 0 {
		return replaceStmts{}
	}
	tbl := quoteLiteral(t.Name)
	rid := func(alias string) string { return alias + "." + t.rowidName }
	var cond []string
	for _, cols := range t.uniques {
		var eq []string
		for _, c := range cols {
			// The index's collation decides what conflicts, not the column's.
			eq = append(eq, "sqlws_c."+quoteIdent(c.name)+" = NEW."+quoteIdent(c.name)+" COLLATE "+quoteIdent(c.coll))
		}
		cond = append(cond, "("+strings.Join(eq, " AND ")+")")
	}
	note := func(where string) string {
		return "DELETE FROM sqlws_pending WHERE tbl = " + tbl + "; " +
			"INSERT INTO sqlws_pending (tbl, rid, pk, old) SELECT " + tbl + ", " + rid("sqlws_c") + ", " +
			keyExpr(t) + ", " + rowExpr(t, "sqlws_c") + " FROM " + quoteIdent(t.Name) + " AS sqlws_c" +
			" WHERE " + where + "; "
	}
	report := func(extra string) string {
		return "INSERT INTO sqlws_changes (tbl, op, pk, old, new, ts) SELECT p.tbl, 'delete', p.pk, p.old, NULL, " + tsExpr +
			" FROM sqlws_pending AS p WHERE p.tbl = " + tbl +
			" AND (NOT EXISTS (SELECT 1 FROM " + quoteIdent(t.Name) + " AS sqlws_c WHERE " + rid("sqlws_c") + " = p.rid)" + extra + ")" +
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

// SyncResult says what SyncTriggers changed.
type SyncResult struct {
	Created, Dropped int
	// Gone are tables captured before this sync that have since stopped existing as
	// the table sqlws captured (recorded in sqlws_drops).
	Gone   []models.Drop
	Tables []string // tracked tables after the sync
	// Missing are --tables entries that do not exist; Skipped are tables that cannot be
	// captured. Neither stops the others from being captured.
	Missing []string
	Skipped []Skipped

	// Paused are tracked tables whose capture is paused (PauseCapture): they have
	// guard triggers instead of capture triggers.
	Paused []string
	// Stale are tracked tables whose triggers differ from what SyncTriggers would
	// install; only checkCapture (a database served read-only) reports them.
	Stale []string
}

// Skipped is a table SyncTriggers could not capture, and why.
type Skipped struct{ Table, Reason string }

// SyncTriggers makes the capture triggers match the live schema: it creates missing
// ones, regenerates those whose table changed (a column added, renamed or the table
// renamed) and drops those of tracked tables that no longer need them. It runs in one
// IMMEDIATE transaction, so it is idempotent and safe with several sqlws processes on
// one file, and it refreshes the cached schema the CRUD layer uses. Triggers on tables
// outside this process's --tables are left alone: another sqlws process may own them.
func (d *DB) SyncTriggers(ctx context.Context) (SyncResult, error) {
	var res SyncResult
	tx, err := d.Writer().BeginTx(ctx, nil)
	if err != nil {
		return res, store.Classify("sync triggers", err)
	}
	defer tx.Rollback()

	// Triggers that write into missing tables would make every application write
	// fail; if sqlws was uninstalled (or migrated down) under a running server, stop
	// capturing rather than reinstall.
	if err := store.RequireInstalled(ctx, tx, store.ChangesTable, store.PendingTable, store.DropsTable); err != nil {
		return res, err
	}

	all, err := userTables(ctx, tx)
	if err != nil {
		return res, err
	}
	names := all
	if len(d.opts.Tables) > 0 {
		exists := map[string]bool{}
		for _, t := range all {
			exists[t] = true
		}
		names = nil
		for _, t := range d.opts.Tables {
			if exists[t] {
				names = append(names, t)
			} else {
				res.Missing = append(res.Missing, t)
			}
		}
	}
	want := map[string]string{}
	entries := map[string]*schemaEntry{}
	inScope := map[string]bool{}
	for _, n := range names {
		inScope[n] = true
		e, err := introspect(ctx, tx, n)
		if err == nil {
			var trg map[string]string
			if trg, err = triggerSQL(e); err == nil {
				for k, v := range trg {
					want[k] = v
				}
				entries[n] = e
				res.Tables = append(res.Tables, n)
				continue
			}
		}
		res.Skipped = append(res.Skipped, Skipped{n, err.Error()})
	}

	// Paused capture (sqlws capture pause, pause.go): a paused table keeps its guard
	// triggers and gets no capture triggers until it is resumed.
	if err := applyPauses(ctx, tx, names, entries, want, &res); err != nil {
		return res, err
	}

	have, err := existingTriggers(ctx, tx)
	if err != nil {
		return res, err
	}
	if res.Gone, err = d.recordGone(ctx, tx, have, res.Paused); err != nil {
		return res, err
	}
	for name, h := range have {
		if (inScope[h.table] || len(d.opts.Tables) == 0) && want[name] != h.sql {
			if _, err := tx.ExecContext(ctx, "DROP TRIGGER IF EXISTS "+quoteIdent(name)); err != nil {
				return res, store.Classify("drop trigger", err)
			}
			res.Dropped++
		}
	}
	for name, sqlText := range want {
		if have[name].sql == sqlText {
			continue
		}
		if _, err := tx.ExecContext(ctx, sqlText); err != nil {
			return res, store.Classify(fmt.Sprintf("create trigger %q", name), err)
		}
		res.Created++
	}
	if err := tx.Commit(); err != nil {
		return res, store.Classify("sync triggers", err)
	}
	d.mu.Lock()
	d.tables = entries
	d.mu.Unlock()
	return res, nil
}

// recordGone finds the tables this process captured whose insert trigger is gone or
// now belongs to another table: SQLite drops a table's triggers with it, and moves
// them with a rename, so that is how a DROP TABLE (also one followed by a CREATE of
// the same name, a different table) or a rename away shows, whatever did it and
// however long ago. ALTER TABLE ADD/DROP COLUMN keeps the triggers. A paused table
// has guard triggers instead (pause.go), which go the same way. Each is recorded at
// the current head, in this transaction, for every process and every replay.
func (d *DB) recordGone(ctx context.Context, tx *sql.Tx, have map[string]trigger, paused []string) ([]models.Drop, error) {
	isPaused := make(map[string]bool, len(paused))
	for _, t := range paused {
		isPaused[t] = true
	}
	present := func(table string) bool {
		names := []string{triggerName(table, "insert")}
		if isPaused[table] {
			names = names[:0]
			for n := range guardSQL(table) {
				names = append(names, n)
			}
		}
		for _, n := range names {
			if h, ok := have[n]; ok && h.table == table {
				return true
			}
		}
		return false
	}
	d.mu.RLock()
	var gone []string
	for name := range d.tables {
		if !present(name) {
			gone = append(gone, name)
		}
	}
	d.mu.RUnlock()
	if len(gone) == 0 {
		return nil, nil
	}
	sort.Strings(gone)
	head, err := Head(ctx, tx)
	if err != nil {
		return nil, err
	}
	out := make([]models.Drop, 0, len(gone))
	for _, name := range gone {
		if _, err := tx.ExecContext(ctx, "INSERT INTO sqlws_drops (seq, tbl) VALUES (?, ?)", head, name); err != nil {
			return nil, store.Classify("record dropped table", err)
		}
		out = append(out, models.Drop{Table: name, Seq: head})
	}
	return out, nil
}

// DropsAfter returns the recorded table drops after rowid after (0: all), and the
// rowid of the last one, for a reader that follows them.
func (d *DB) DropsAfter(ctx context.Context, after int64) ([]models.Drop, int64, error) {
	rows, err := d.Reader().QueryContext(ctx, "SELECT rowid, seq, tbl FROM sqlws_drops WHERE rowid > ? ORDER BY rowid", after)
	if err != nil {
		return nil, after, store.Classify("read dropped tables", err)
	}
	defer rows.Close()
	var out []models.Drop
	for rows.Next() {
		var dr models.Drop
		if err := rows.Scan(&after, &dr.Seq, &dr.Table); err != nil {
			return nil, after, store.Classify("read dropped tables", err)
		}
		out = append(out, dr)
	}
	return out, after, store.Classify("read dropped tables", rows.Err())
}

type trigger struct{ table, sql string }

func existingTriggers(ctx context.Context, q querier) (map[string]trigger, error) {
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
