package db

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"

	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/store"
)

// ServeReadOnly prepares to serve a database this process cannot write; problem is
// CheckWritable's answer. Nothing can be installed or repaired without writing, so it
// succeeds only if sqlws is installed and capture is up to date: every migration
// applied and every tracked table's triggers exactly those SyncTriggers would
// install (paused tables excepted). Otherwise its error names the file, the
// permission and what is missing. Afterwards every write is refused with 503
// read_only before it reaches SQLite, and the tailer re-checks capture after schema
// changes instead of syncing it.
func (d *DB) ServeReadOnly(ctx context.Context, problem string) (SyncResult, error) {
	refuse := func(what string, args ...any) error {
		return fmt.Errorf("%s; it cannot be served read-only because %s. Give this process write access (to the file, and to its directory for the -wal and -shm files), or run sqlws serve once with write access to install",
			problem, fmt.Sprintf(what, args...))
	}
	res, err := d.checkCapture(ctx)
	if errors.Is(err, ErrNotInstalled) {
		return res, refuse("sqlws is not installed in it")
	}
	if err != nil {
		return res, fmt.Errorf("%s; checking sqlws's installation: %w", problem, err)
	}
	pending, err := d.PendingMigrations(ctx)
	if err != nil {
		return res, fmt.Errorf("%s; checking sqlws's migrations: %w", problem, err)
	}
	if len(pending) > 0 {
		return res, refuse("sqlws's migrations %s are not applied", strings.Join(pending, ", "))
	}
	if len(res.Stale) > 0 {
		return res, refuse("the capture triggers of %s are missing or out of date", quoteList(res.Stale))
	}
	if len(res.Missing) > 0 {
		return res, nil // the caller reports --tables entries that do not exist
	}
	if err := d.LoadMeta(ctx); err != nil {
		return res, refuse("its stream id cannot be read (%v)", err)
	}
	d.SetReadOnly(problem)
	return res, nil
}

// syncCapture is what the tailer runs after a schema change: SyncTriggers, or on a
// database served read-only, checkCapture, which refreshes the schema the CRUD layer
// uses and reports tables whose triggers are out of date without touching them.
func (d *DB) syncCapture(ctx context.Context) (SyncResult, error) {
	if d.ReadOnly() != "" {
		return d.checkCapture(ctx)
	}
	return d.SyncTriggers(ctx)
}

// checkCapture is SyncTriggers without writing: it works out the triggers SyncTriggers
// would want (its plan must stay the same as SyncTriggers'), lists in Stale the tracked
// tables whose triggers differ, and refreshes the cached schema. It reads in one read
// transaction on the reader pool.
func (d *DB) checkCapture(ctx context.Context) (SyncResult, error) {
	var res SyncResult
	tx, err := d.Reader().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return res, store.Classify("check capture", err)
	}
	defer tx.Rollback()
	if err := store.RequireInstalled(ctx, tx, store.ChangesTable, store.PendingTable, store.MetaTable); err != nil {
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
	owner := map[string]string{} // trigger name → table
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
					owner[k] = n
				}
				entries[n] = e
				res.Tables = append(res.Tables, n)
				continue
			}
		}
		res.Skipped = append(res.Skipped, Skipped{n, err.Error()})
	}
	if err := applyPauses(ctx, tx, names, entries, want, &res); err != nil {
		return res, err
	}
	for _, t := range res.Paused {
		for k := range guardSQL(t) {
			owner[k] = t
		}
	}
	have, err := existingTriggers(ctx, tx)
	if err != nil {
		return res, err
	}
	stale := map[string]bool{}
	for name, sqlText := range want {
		if have[name].sql != sqlText {
			stale[owner[name]] = true
		}
	}
	for name, h := range have {
		if (inScope[h.table] || len(d.opts.Tables) == 0) && want[name] != h.sql {
			stale[h.table] = true // a trigger SyncTriggers would drop
		}
	}
	for t := range stale {
		res.Stale = append(res.Stale, t)
	}
	sort.Strings(res.Stale)
	d.mu.Lock()
	d.tables = entries
	d.mu.Unlock()
	return res, nil
}

// quoteList is names, double-quoted and comma-separated, for messages.
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", errors.Clip(n))
	}
	return strings.Join(q, ", ")
}
