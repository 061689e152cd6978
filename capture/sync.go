package capture

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/store"
)

// SyncResult says what Sync changed (or, from Check, would change).
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

	// Paused are tracked tables whose capture is paused (Pause): they have guard
	// triggers instead of capture triggers.
	Paused []string
	// Stale are tracked tables whose triggers differ from what Sync would install;
	// only Check (a database served read-only) reports them.
	Stale []string
}

// Skipped is a table Sync could not capture, and why.
type Skipped struct{ Table, Reason string }

// Syncer keeps the capture triggers of the tracked tables matching their schema.
type Syncer struct {
	schema *Schema
	db     *store.DB

	// mu serializes syncs: each compares the schema with what the previous one
	// captured.
	mu sync.Mutex
	// synced are the tables the last sync captured (paused ones included): those
	// whose disappearance the next sync records.
	synced map[string]bool
}

// NewSyncer returns a syncer for the tables schema tracks. It installs nothing until
// Install or Sync.
func NewSyncer(schema *Schema) *Syncer {
	return &Syncer{schema: schema, db: schema.db}
}

// Install prepares the database for capture: it applies sqlws's migrations, loads
// the stream id and installs the capture triggers.
func (s *Syncer) Install(ctx context.Context) (SyncResult, error) {
	if err := s.db.Migrate(ctx); err != nil {
		return SyncResult{}, err
	}
	if err := s.db.LoadMeta(ctx); err != nil {
		return SyncResult{}, err
	}
	return s.Sync(ctx)
}

// Update brings capture up to date after a schema change: Sync, or on a database
// served read-only, which it cannot change, Check.
func (s *Syncer) Update(ctx context.Context) (SyncResult, error) {
	if s.db.ReadOnly() != "" {
		return s.Check(ctx)
	}
	return s.Sync(ctx)
}

// plan is what capture of the tables in scope wants, read in one transaction: the
// triggers by name, and which table each belongs to.
type plan struct {
	scan
	want    map[string]string // trigger name → SQL
	owner   map[string]string // trigger name → table
	inScope map[string]bool
	res     SyncResult // Tables, Missing, Skipped and Paused filled in
}

// makePlan works out the triggers Sync installs and Check expects: capture triggers
// for every tracked table, guards instead for paused ones. Sync registers the native
// layout's shapes (and the value columns they need) as it goes; Check only looks
// them up, and a shape not recorded makes the table's triggers differ.
func makePlan(ctx context.Context, q store.Querier, scope []string, register bool) (*plan, error) {
	sc, err := readScan(ctx, q, scope)
	if err != nil {
		return nil, err
	}
	p := &plan{scan: sc, want: map[string]string{}, owner: map[string]string{}, inScope: map[string]bool{}}
	p.res.Missing, p.res.Skipped = sc.missing, sc.skipped
	for _, n := range sc.names {
		p.inScope[n] = true
		t, ok := sc.tables[n]
		if !ok {
			continue
		}
		var sid int64
		if t.native() {
			if sid, err = shapeID(ctx, q, t, register); err != nil {
				return nil, err
			}
			if register {
				names, _, _ := t.members()
				if err := ensureValueColumns(ctx, q.(*sql.Tx), 2*len(names)); err != nil {
					return nil, err
				}
			}
		}
		trg, err := triggerSQL(t, sid)
		if err != nil { // readScan keeps only tables it can capture
			return nil, err
		}
		for k, v := range trg {
			p.want[k] = v
			p.owner[k] = n
		}
		p.res.Tables = append(p.res.Tables, n)
	}
	// Paused capture (sqlws capture pause, pause.go): a paused table keeps its guard
	// triggers and gets no capture triggers until it is resumed.
	if err := applyPauses(ctx, q, sc.names, sc.tables, p.want, &p.res); err != nil {
		return nil, err
	}
	for _, t := range p.res.Paused {
		for k := range guardSQL(t) {
			p.owner[k] = t
		}
	}
	return p, nil
}

// drops reports whether trigger h (named name) is one this scope's sync may drop:
// on a table in scope (or any table, without --tables) and not wanted as it is.
// Triggers on tables outside this process's --tables are left alone: another sqlws
// process may own them.
func (p *plan) drops(scope []string, name string, h trigger) bool {
	if strings.HasPrefix(h.table, "sqlws_") {
		return false // the migrations' own, such as the changelog's head guard
	}
	return (p.inScope[h.table] || len(scope) == 0) && p.want[name] != h.sql
}

// Sync makes the capture triggers match the live schema: it creates missing ones,
// regenerates those whose table changed (a column added, renamed or the table
// renamed), drops those of tracked tables that no longer need them and records
// captured tables that are gone. It runs in one IMMEDIATE transaction, so it is
// idempotent and safe with several sqlws processes on one file, and then refreshes
// the schema snapshot, whose triggers it changed.
func (s *Syncer) Sync(ctx context.Context) (SyncResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var res SyncResult
	tx, err := s.db.Writer().BeginTx(ctx, nil)
	if err != nil {
		return res, store.Classify("sync triggers", err)
	}
	defer tx.Rollback()

	// Triggers that write into missing tables would make every application write
	// fail; if sqlws was uninstalled (or migrated down) under a running server, stop
	// capturing rather than reinstall.
	if err := store.RequireInstalled(ctx, tx, store.ChangesTable, store.PendingTable, store.DropsTable, store.ShapesTable); err != nil {
		return res, err
	}
	p, err := makePlan(ctx, tx, s.schema.scope, true)
	if err != nil {
		return res, err
	}
	res = p.res
	have, err := existingTriggers(ctx, tx)
	if err != nil {
		return res, err
	}
	if res.Gone, err = s.recordGone(ctx, tx, have, res.Paused); err != nil {
		return res, err
	}
	for name, h := range have {
		if p.drops(s.schema.scope, name, h) {
			if _, err := tx.ExecContext(ctx, "DROP TRIGGER IF EXISTS "+QuoteIdent(name)); err != nil {
				return res, store.Classify("drop trigger", err)
			}
			res.Dropped++
		}
	}
	for name, sqlText := range p.want {
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
	s.db.Wrote() // the tailer reads the drops this sync recorded at once
	s.synced = make(map[string]bool, len(p.tables))
	for n := range p.tables {
		s.synced[n] = true
	}
	return res, s.schema.Refresh(ctx)
}

// recordGone finds the tables the last sync captured whose insert trigger is gone or
// now belongs to another table: SQLite drops a table's triggers with it, and moves
// them with a rename, so that is how a DROP TABLE (also one followed by a CREATE of
// the same name, a different table) or a rename away shows, whatever did it and
// however long ago. ALTER TABLE ADD/DROP COLUMN keeps the triggers. A paused table
// has guard triggers instead (pause.go), which go the same way. Each is recorded at
// the current head, in this transaction, for every process and every replay.
func (s *Syncer) recordGone(ctx context.Context, tx *sql.Tx, have map[string]trigger, paused []string) ([]models.Drop, error) {
	isPaused := make(map[string]bool, len(paused))
	for _, t := range paused {
		isPaused[t] = true
	}
	var gone []string
	for name := range s.synced {
		if !hasCapture(have, name, isPaused[name]) {
			gone = append(gone, name)
		}
	}
	if len(gone) == 0 {
		return nil, nil
	}
	sort.Strings(gone)
	head, err := store.Head(ctx, tx)
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

// hasCapture reports whether table still has the trigger that captures its inserts
// (or, paused, one of its guards): sqlws's triggers go with their table when it is
// dropped and move with it when it is renamed.
func hasCapture(have map[string]trigger, table string, paused bool) bool {
	if !paused {
		h, ok := have[triggerName(table, "insert")]
		return ok && h.table == table
	}
	for n := range guardSQL(table) {
		if h, ok := have[n]; ok && h.table == table {
			return true
		}
	}
	return false
}

// Check is Sync without writing: it works out the triggers Sync would want (the same
// plan), lists in Stale the tracked tables whose triggers differ, and refreshes the
// schema snapshot. It reads in one read transaction on the reader pool.
func (s *Syncer) Check(ctx context.Context) (SyncResult, error) {
	var res SyncResult
	tx, err := s.db.Reader().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return res, store.Classify("check capture", err)
	}
	defer tx.Rollback()
	if err := store.RequireInstalled(ctx, tx, store.ChangesTable, store.PendingTable, store.MetaTable); err != nil {
		return res, err
	}
	p, err := makePlan(ctx, tx, s.schema.scope, false)
	if err != nil {
		return res, err
	}
	res = p.res
	have, err := existingTriggers(ctx, tx)
	if err != nil {
		return res, err
	}
	stale := map[string]bool{}
	for name, sqlText := range p.want {
		if have[name].sql != sqlText {
			stale[p.owner[name]] = true
		}
	}
	for name, h := range have {
		if p.drops(s.schema.scope, name, h) {
			stale[h.table] = true // a trigger Sync would drop
		}
	}
	for t := range stale {
		res.Stale = append(res.Stale, t)
	}
	sort.Strings(res.Stale)
	tx.Rollback()
	return res, s.schema.Refresh(ctx)
}

// ServeReadOnly prepares to serve a database this process cannot write; problem is
// store.DB.CheckWritable's answer. Nothing can be installed or repaired without
// writing, so it succeeds only if sqlws is installed and capture is up to date: every
// migration applied and every tracked table's triggers exactly those Sync would
// install (paused tables excepted). Otherwise its error names the file, the
// permission and what is missing. Afterwards the store refuses every write with 503
// read_only before it reaches SQLite, and Update checks capture after schema changes
// instead of syncing it.
func (s *Syncer) ServeReadOnly(ctx context.Context, problem string) (SyncResult, error) {
	refuse := func(what string, args ...any) error {
		return fmt.Errorf("%s; it cannot be served read-only because %s. Give this process write access (to the file, and to its directory for the -wal and -shm files), or run sqlws serve once with write access to install",
			problem, fmt.Sprintf(what, args...))
	}
	res, err := s.Check(ctx)
	if errors.Is(err, store.ErrNotInstalled) {
		return res, refuse("sqlws is not installed in it")
	}
	if err != nil {
		return res, fmt.Errorf("%s; checking sqlws's installation: %w", problem, err)
	}
	pending, err := s.db.PendingMigrations(ctx)
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
	if err := s.db.LoadMeta(ctx); err != nil {
		return res, refuse("its stream id cannot be read (%v)", err)
	}
	s.db.SetReadOnly(problem)
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

// Bounds of the back-off between failed syncs.
const (
	minSyncRetry = 100 * time.Millisecond
	maxSyncRetry = 5 * time.Second
)

// Run keeps capture matching the schema until ctx is done: it runs Update at once (the
// schema may have changed since Install) and again after every schema change the
// Schema announces (Notify). A failed update (e.g. SQLITE_BUSY behind another writer)
// is retried no sooner than 0.1 s later, doubling up to 5 s: at most one attempt and
// one warning per interval, whatever changes meanwhile. It returns an error wrapping
// store.ErrNotInstalled if sqlws's tables are removed from the database under it
// (uninstall or migrate down with --force): there is nothing left to capture into.
func (s *Syncer) Run(ctx context.Context) error {
	log := s.schema.log
	needSync := true
	retry := minSyncRetry
	var retryAt time.Time
	// What the log was last told, so each state is logged once when it begins.
	paused := map[string]bool{}
	stale := map[string]bool{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		// Taken before the update, so that a change during it wakes the next wait.
		changed := s.schema.Notify()
		if needSync && !time.Now().Before(retryAt) {
			res, err := s.Update(ctx)
			switch {
			case errors.Is(err, store.ErrNotInstalled):
				return fmt.Errorf("sync capture triggers: %w", err)
			case err != nil:
				if ctx.Err() != nil {
					return nil
				}
				log.Warn("sync capture triggers after a schema change; will retry", "err", err, "in", retry)
				retryAt = time.Now().Add(retry)
				retry = min(2*retry, maxSyncRetry)
			default:
				needSync = false
				retry, retryAt = minSyncRetry, time.Time{}
				if res.Created+res.Dropped > 0 {
					log.Info("capture triggers updated", "created", res.Created, "dropped", res.Dropped, "tables", len(res.Tables))
				}
				for _, sk := range res.Skipped {
					log.Warn("table not captured", "table", sk.Table, "reason", sk.Reason)
				}
				logChanges(log, paused, res.Paused,
					"capture paused for a schema change: writes to the table fail until sqlws capture resume",
					"capture resumed")
				logChanges(log, stale, res.Stale,
					"capture triggers out of date, and this server serves the database read-only and cannot update them: changes to the table may be captured with an old shape or not at all",
					"capture triggers up to date again")
			}
		}
		var retryNow <-chan time.Time
		if needSync {
			timer.Reset(time.Until(retryAt))
			retryNow = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			needSync = true
		case <-retryNow:
		}
	}
}

// logChanges logs each table that joined set (began) or left it (ended), once, and
// updates known to set.
func logChanges(log *slog.Logger, known map[string]bool, set []string, began, ended string) {
	now := make(map[string]bool, len(set))
	for _, tbl := range set {
		now[tbl] = true
		if !known[tbl] {
			log.Warn(began, "table", tbl)
		}
	}
	for tbl := range known {
		if !now[tbl] {
			log.Info(ended, "table", tbl)
		}
	}
	clear(known)
	for tbl := range now {
		known[tbl] = true
	}
}
