package capture

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"

	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/store"
)

// Pausing capture lets an application change a captured table's shape in ways the
// capture triggers forbid (ALTER TABLE … DROP COLUMN fails while a trigger names the
// column) without a single write going uncaptured. Pause replaces the table's
// capture triggers, in one transaction, by guard triggers that name no column and
// make every INSERT, UPDATE and DELETE on the table fail with guardMessage, and
// records the pause in sqlws_meta. Servers leave a paused table alone (Sync
// keeps the guards and installs no capture triggers) but keep its schema fresh for
// reads. Resume, in one transaction, installs the capture triggers for the
// table's shape at that moment, drops the guards and clears the record.

// pausedPrefix starts every guard's message (IsGuardMessage).
const pausedPrefix = "sqlws: capture of "

// IsGuardMessage reports whether msg, the message of a trigger that refused a write,
// is a pause guard's: not the writer's fault, and over once capture resumes.
func IsGuardMessage(msg string) bool { return strings.HasPrefix(msg, pausedPrefix) }

// pauseKey prefixes a paused table's name as its sqlws_meta key.
const pauseKey = "capture_paused:"

// guardOps are the statements a guard refuses, as trigger-name parts.
var guardOps = []string{"insert", "update", "delete"}

// guardMessage is what a write to a paused table fails with.
func guardMessage(table string) string {
	return pausedPrefix + table + " is paused for a schema change; run sqlws capture resume --table " + shellWord(table)
}

// shellWord quotes s for a POSIX shell when it needs quoting.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// guardSQL generates the guard triggers of a paused table, keyed by name. They are
// BEFORE triggers, so a refused write changes nothing, and reference no column, so
// any ALTER TABLE on the table is allowed.
func guardSQL(table string) map[string]string {
	out := map[string]string{}
	for _, op := range guardOps {
		name := triggerName(table, "paused_"+op)
		out[name] = "CREATE TRIGGER " + QuoteIdent(name) + " BEFORE " + strings.ToUpper(op) + " ON " + QuoteIdent(table) +
			" FOR EACH ROW BEGIN SELECT RAISE(ABORT, " + QuoteLiteral(guardMessage(table)) + "); END"
	}
	return out
}

// isGuard reports whether trigger name is one of table's guards.
func isGuard(table, name string) bool {
	_, ok := guardSQL(table)[name]
	return ok
}

// pausedTables lists the tables whose capture is paused.
func pausedTables(ctx context.Context, q store.Querier) (map[string]bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT substr(key, ?) FROM sqlws_meta WHERE substr(key, 1, ?) = ?`,
		len(pauseKey)+1, len(pauseKey), pauseKey)
	if err != nil {
		if store.IsNoSuchTable(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list paused tables: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("list paused tables: %w", err)
		}
		out[t] = true
	}
	return out, rows.Err()
}

// applyPauses adjusts a trigger plan (Sync's and Check's) for paused
// tables among names: their capture triggers are taken out of want and their guards
// put in, so a sync keeps the guards (and restores any dropped by hand) and installs
// no capture trigger. Their schema entries stay, for reads and subscriptions.
func applyPauses(ctx context.Context, q store.Querier, names []string, entries map[string]*Table, want map[string]string, res *SyncResult) error {
	paused, err := pausedTables(ctx, q)
	if err != nil || len(paused) == 0 {
		return err
	}
	for _, t := range names {
		if !paused[t] {
			continue
		}
		if e, ok := entries[t]; ok {
			trg, _ := triggerSQL(e, 0) // only the names; it worked when the plan was made
			for name := range trg {
				delete(want, name)
			}
		}
		for name, s := range guardSQL(t) {
			want[name] = s
		}
		res.Paused = append(res.Paused, t)
	}
	return nil
}

// Pause pauses capture of table (see the top of this file). It reports false,
// changing nothing, if capture of table was paused already. Writes to the table fail
// until Resume.
func Pause(ctx context.Context, db *store.DB, table string) (bool, error) {
	paused := false
	err := db.Write(ctx, "pause capture", func(tx *sql.Tx) error {
		stmts, already, err := pauseStmts(ctx, tx, table, true)
		if err != nil || already {
			return err
		}
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return err
			}
		}
		paused = true
		return nil
	})
	return paused, err
}

// PauseSQL is the SQL Pause would run, one statement per line, for pasting
// into a migration. It needs only the table to exist.
func PauseSQL(ctx context.Context, db *store.DB, table string) (string, error) {
	stmts, _, err := pauseStmts(ctx, db.Reader(), table, false)
	if err != nil {
		return "", err
	}
	return printSQL("pause", table, stmts), nil
}

// pauseStmts are the statements that pause capture of table, in an order that keeps
// every write to it captured or refused even if they run one at a time: the guards
// first, then the capture triggers go, then the record. With check it also requires
// sqlws to be installed and table to be captured, and reports a pause already in
// place.
func pauseStmts(ctx context.Context, q store.Querier, table string, check bool) (stmts []string, already bool, err error) {
	if err := tableExists(ctx, q, table); err != nil {
		return nil, false, err
	}
	have, err := existingTriggers(ctx, q)
	if err != nil {
		return nil, false, err
	}
	var capture []string
	for name, h := range have {
		if h.table == table && !isGuard(table, name) {
			capture = append(capture, name)
		}
	}
	if check {
		if err := store.RequireInstalled(ctx, q, store.ChangesTable, store.PendingTable, store.MetaTable); err != nil {
			return nil, false, err
		}
		paused, err := pausedTables(ctx, q)
		if err != nil {
			return nil, false, err
		}
		if paused[table] {
			return nil, true, nil
		}
		if len(capture) == 0 {
			return nil, false, errors.WithCode(errors.Invalid, errors.CodeNotCaptured,
				"table %q has no sqlws capture triggers: it is not captured, so there is nothing to pause", errors.Clip(table))
		}
	} else {
		// Printed SQL may run later against another copy of the database: drop every
		// capture trigger the table could have.
		for _, op := range []string{"insert", "update", "delete", "replace_insert", "replace_update"} {
			capture = append(capture, triggerName(table, op))
		}
	}
	sort.Strings(capture)
	capture = compactStrings(capture)
	for _, s := range sortedValues(guardSQL(table)) {
		stmts = append(stmts, strings.Replace(s, "CREATE TRIGGER ", "CREATE TRIGGER IF NOT EXISTS ", 1))
	}
	for _, name := range capture {
		stmts = append(stmts, "DROP TRIGGER IF EXISTS "+QuoteIdent(name))
	}
	stmts = append(stmts, "INSERT OR REPLACE INTO sqlws_meta (key, value) VALUES ("+QuoteLiteral(pauseKey+table)+
		", strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))")
	return stmts, false, nil
}

// ResumeResult says what Resume did.
type ResumeResult struct {
	Columns []string // the table's columns now captured
	Dropped bool     // the table no longer exists: only the pause record was cleared
}

// Resume resumes capture of a paused table with capture triggers for its
// current shape (see the top of this file). It fails, leaving the pause in place, if
// capture of table is not paused or the table cannot be captured as it is now.
func Resume(ctx context.Context, db *store.DB, table string) (ResumeResult, error) {
	var res ResumeResult
	err := db.Write(ctx, "resume capture", func(tx *sql.Tx) error {
		if err := store.RequireInstalled(ctx, tx, store.ChangesTable, store.PendingTable, store.MetaTable); err != nil {
			return err
		}
		paused, err := pausedTables(ctx, tx)
		if err != nil {
			return err
		}
		if !paused[table] {
			return errors.WithCode(errors.Invalid, errors.CodeNotPaused, "capture of table %q is not paused", errors.Clip(table))
		}
		var stmts []string
		if tableExists(ctx, tx, table) != nil {
			// Dropped while paused: its guards went with it; clear the record.
			res.Dropped = true
			stmts = []string{"DELETE FROM sqlws_meta WHERE key = " + QuoteLiteral(pauseKey+table)}
		} else if stmts, res.Columns, err = resumeStmts(ctx, tx, table, true); err != nil {
			return err
		}
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	return res, err
}

// ResumeSQL is the SQL Resume would run for table as it is now, one statement
// per line, for pasting into a migration after the schema change (generate it on a
// copy of the database on which the change was made).
func ResumeSQL(ctx context.Context, db *store.DB, table string) (string, error) {
	if err := tableExists(ctx, db.Reader(), table); err != nil {
		return "", err
	}
	stmts, _, err := resumeStmts(ctx, db.Reader(), table, false)
	if err != nil {
		return "", err
	}
	return printSQL("resume", table, stmts), nil
}

// resumeStmts are the statements that resume capture of table with triggers for its
// current shape, in an order that keeps every write captured or refused between
// them: the capture triggers first (each replacing any of the same name), then the
// guards go, then the record. With register (q a write transaction: Resume) the
// triggers write the native layout, its shape recorded here; printed SQL (ResumeSQL)
// writes the JSON layout, which needs no shape id known in advance — it may run
// against another copy of the database — and the next sync of a running server
// upgrades them. The reader reads both.
func resumeStmts(ctx context.Context, q store.Querier, table string, register bool) ([]string, []string, error) {
	e, err := introspect(ctx, q, table)
	if err != nil {
		return nil, nil, err
	}
	var sid int64
	if register && e.native() {
		if sid, err = shapeID(ctx, q, e, true); err != nil {
			return nil, nil, err
		}
		names, _, _ := e.members()
		if err := ensureValueColumns(ctx, q.(*sql.Tx), 2*len(names)); err != nil {
			return nil, nil, err
		}
	}
	trg, err := triggerSQL(e, sid)
	if err != nil {
		return nil, nil, errors.E(errors.Invalid, errors.CodeNotCapturable, err.Error(), err)
	}
	var stmts []string
	names := make([]string, 0, len(trg))
	for name := range trg {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		stmts = append(stmts, "DROP TRIGGER IF EXISTS "+QuoteIdent(name), trg[name])
	}
	guards := make([]string, 0, len(guardOps))
	for name := range guardSQL(table) {
		guards = append(guards, name)
	}
	sort.Strings(guards)
	for _, name := range guards {
		stmts = append(stmts, "DROP TRIGGER IF EXISTS "+QuoteIdent(name))
	}
	stmts = append(stmts, "DELETE FROM sqlws_meta WHERE key = "+QuoteLiteral(pauseKey+table))
	cols := make([]string, 0, len(e.Columns))
	for _, c := range e.Columns {
		cols = append(cols, c.Name)
	}
	return stmts, cols, nil
}

// printSQL lays out statements for --print.
func printSQL(verb, table string, stmts []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- sqlws capture %s --table %s\n", verb, shellWord(table))
	b.WriteString("-- Run these statements in one transaction: a goose SQL migration is one; in the\n")
	b.WriteString("-- sqlite3 shell wrap them in BEGIN IMMEDIATE; ... COMMIT;. Their order keeps every\n")
	b.WriteString("-- write to the table captured or refused even between statements.\n")
	if verb == "resume" {
		b.WriteString("-- The capture triggers are for the table's shape when this was printed.\n")
	}
	for _, s := range stmts {
		b.WriteString(s)
		b.WriteString(";\n")
	}
	return b.String()
}

func sortedValues(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
