package capture

import (
	"context"
	"database/sql"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/store"
)

// Options configure a Schema.
type Options struct {
	// Tables limits capture to these tables; empty means every user table, including
	// tables created later.
	Tables []string
	// Poll is how often Schema.Run reads the schema version when nothing pokes it.
	// Default DefaultPoll.
	Poll time.Duration
	// Logger receives what the schema watcher and the syncer have to say. Default
	// slog.Default().
	Logger *slog.Logger
}

// Schema is the live schema of the tracked tables: one immutable snapshot at a time,
// replaced whole when the database's schema changes. Everything that depends on the
// schema reads it here — REST's table lookups, subscriptions' table check — or waits
// on Notify for the next one, as trigger sync does, so none of them depends on
// another to notice a change.
type Schema struct {
	db    *store.DB
	scope []string
	poll  time.Duration
	log   *slog.Logger

	snap atomic.Pointer[snapshot]

	mu     sync.Mutex    // serializes refreshes; guards notify
	notify chan struct{} // closed when a snapshot of a new schema version replaces the current one
	poke   chan struct{} // Run's cue to look now (Poke); buffered 1
}

// snapshot is the schema as one read transaction saw it. It is never modified.
type snapshot struct {
	version  int64             // PRAGMA schema_version
	tables   map[string]*Table // the tracked tables
	list     []models.Table    // the same, sorted by name
	captured map[string]bool   // tracked tables with capture triggers (or guards) on them
}

// NewSchema returns the schema of db's tables in opts.Tables (all, if empty). It is
// empty until the first Refresh.
func NewSchema(db *store.DB, opts Options) *Schema {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	s := &Schema{db: db, scope: opts.Tables, poll: opts.Poll, log: opts.Logger, notify: make(chan struct{}), poke: make(chan struct{}, 1)}
	s.snap.Store(&snapshot{version: -1})
	return s
}

// Table is the live schema of a tracked table. The table is shared: do not modify it.
func (s *Schema) Table(name string) (*Table, bool) {
	t, ok := s.snap.Load().tables[name]
	return t, ok
}

// Tables is the live schema of every tracked table, sorted by name.
func (s *Schema) Tables() []models.Table {
	return append([]models.Table(nil), s.snap.Load().list...)
}

// Tracked reports whether name is a tracked table.
func (s *Schema) Tracked(name string) bool {
	_, ok := s.snap.Load().tables[name]
	return ok
}

// Captured reports whether a tracked table has its capture triggers (or, paused, its
// guards), so that a write to it is captured or refused, never silently left out of
// the changelog. A table created or replaced a moment ago has none until the next
// sync.
func (s *Schema) Captured(name string) bool { return s.snap.Load().captured[name] }

// Notify returns a channel that is closed when the schema next changes (a snapshot of
// a newer schema version replaces the current one). Take it before reading the
// snapshot, so that no change falls between the two.
func (s *Schema) Notify() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notify
}

// Refresh reads the schema of the tracked tables, in one read transaction, and makes
// it the snapshot; if the schema version moved, it wakes every Notify channel.
func (s *Schema) Refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := &snapshot{}
	err := s.db.Read(ctx, "read schema", func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&snap.version); err != nil {
			return err
		}
		sc, err := readScan(ctx, tx, s.scope)
		if err != nil {
			return err
		}
		have, err := existingTriggers(ctx, tx)
		if err != nil {
			return err
		}
		snap.tables = sc.tables
		snap.captured = make(map[string]bool, len(sc.tables))
		for name, t := range sc.tables {
			snap.list = append(snap.list, t.Table)
			snap.captured[name] = hasCapture(have, name, false) || hasCapture(have, name, true)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(snap.list, func(i, j int) bool { return snap.list[i].Name < snap.list[j].Name })
	old := s.snap.Swap(snap)
	if old.version != snap.version {
		close(s.notify)
		s.notify = make(chan struct{})
	}
	return nil
}

// DefaultPoll is how often Run reads the schema version when nothing pokes it, so
// that REST's view of the tables, and trigger sync, follow a schema change within
// this even where nothing tails the changelog.
const DefaultPoll = time.Second

// Poke makes Run look at the schema version now rather than at its next poll. The
// tailer pokes when it sees PRAGMA schema_version move, so a new table is captured
// within milliseconds of the commit that creates it. It never blocks.
func (s *Schema) Poke() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// Run keeps the snapshot current until ctx is done: whenever it is poked, and every
// Options.Poll, it reads PRAGMA schema_version (one page read, however large the
// schema) and refreshes the snapshot if the version moved. A failure is logged once
// when it begins and once when it ends, and retried at the next poll.
func (s *Schema) Run(ctx context.Context) error {
	t := time.NewTicker(s.poll)
	defer t.Stop()
	var fails episode
	for {
		var v int64
		err := s.db.Reader().QueryRowContext(ctx, "PRAGMA schema_version").Scan(&v)
		if err == nil && v != s.snap.Load().version {
			err = s.Refresh(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fails.fail(s.log, "read schema: failing; will retry", err)
		} else {
			fails.ok(s.log, "read schema: works again")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.poke:
		}
	}
}

// episode logs a failure that repeats on every attempt once when it begins and once
// when it ends, with how many attempts failed: a failing database fails every poll,
// and a line per poll would bury the log.
type episode struct {
	since time.Time
	n     int
}

func (e *episode) fail(log *slog.Logger, msg string, err error) {
	if e.n++; e.n == 1 {
		e.since = time.Now()
		log.Warn(msg, "err", err)
	}
}

func (e *episode) ok(log *slog.Logger, msg string) {
	if e.n > 0 {
		log.Info(msg, "failures", e.n, "for", time.Since(e.since).Round(time.Millisecond))
		e.n = 0
	}
}

// scan is the tables in a scope, read in one snapshot.
type scan struct {
	names   []string          // existing tables in scope: all sorted, or in --tables order
	tables  map[string]*Table // those of names capture can key: the tracked tables
	missing []string          // --tables entries that do not exist
	skipped []Skipped         // tables in scope that cannot be captured, and why
}

// readScan reads the tables in scope (every user table when scope is empty).
func readScan(ctx context.Context, q store.Querier, scope []string) (scan, error) {
	var sc scan
	all, err := UserTables(ctx, q)
	if err != nil {
		return sc, err
	}
	sc.names = all
	if len(scope) > 0 {
		exists := map[string]bool{}
		for _, t := range all {
			exists[t] = true
		}
		sc.names = nil
		for _, t := range scope {
			if exists[t] {
				sc.names = append(sc.names, t)
			} else {
				sc.missing = append(sc.missing, t)
			}
		}
	}
	sc.tables = make(map[string]*Table, len(sc.names))
	for _, n := range sc.names {
		t, err := introspect(ctx, q, n)
		if err == nil {
			err = t.capturable()
		}
		if err != nil {
			sc.skipped = append(sc.skipped, Skipped{n, err.Error()})
			continue
		}
		sc.tables[n] = t
	}
	return sc, nil
}
