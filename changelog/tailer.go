package changelog

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/internal/faillog"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/store"
)

// TailerOptions configure a Tailer.
type TailerOptions struct {
	// Poll is how often the tailer asks SQLite whether another process committed
	// (PRAGMA data_version) when it cannot watch the WAL file. Default 2ms. sqlws's own
	// commits wake it at once regardless.
	Poll time.Duration
	// IdlePoll is the safety-net poll interval while the WAL file is watched (Linux
	// inotify wakes the tailer on the first write after each poll). Default 100ms.
	IdlePoll time.Duration
	// Batch is the most changes read per statement. Default 1000.
	Batch int
	// BatchBytes bounds the encoded bytes read per statement. Default 4 MiB.
	BatchBytes int
	// Dropped is told about captured tables that stopped existing (recorded in
	// sqlws_drops by a trigger sync, capture.SyncResult.Gone), this process's findings
	// and other processes' alike: all of them recorded so far at the first read, then
	// each new one at the first read after it is recorded. Called from the tailer's
	// goroutine.
	Dropped func([]models.Drop)
	// SchemaChanged is called when the tailer sees PRAGMA schema_version move: another
	// connection (or a trigger sync) changed the schema. Pass capture.Schema.Poke, so
	// that the schema snapshot, and after it the capture triggers, follow within
	// milliseconds of the commit. Called from the tailer's goroutine; it must not
	// block.
	SchemaChanged func()
	Logger        *slog.Logger
}

// Tailer reads new changelog rows in seq order and hands them, encoded, to a sink. It
// never holds a read transaction open between reads, so WAL checkpoints proceed, and
// it retries SQLITE_BUSY forever rather than skip a change.
type Tailer struct {
	log  *Log
	db   *store.DB
	sink func([]models.Encoded)
	opts TailerOptions
	last atomic.Int64 // seq of the last change handed to the sink
	// dropsRead is the rowid of the last sqlws_drops row handed to opts.Dropped.
	dropsRead int64
}

// NewTailer returns a tailer that delivers every change with seq > after to sink.
// sink is called from one goroutine, in seq order; it must not block for long.
func (l *Log) NewTailer(after int64, sink func([]models.Encoded), opts TailerOptions) *Tailer {
	if opts.Poll <= 0 {
		opts.Poll = 2 * time.Millisecond
	}
	if opts.IdlePoll <= 0 {
		opts.IdlePoll = 100 * time.Millisecond
	}
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 4 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	t := &Tailer{log: l, db: l.db, sink: sink, opts: opts}
	t.last.Store(after)
	return t
}

// Last is the seq of the last change handed to the sink.
func (t *Tailer) Last() int64 { return t.last.Load() }

// Run tails until ctx is done. It returns an error wrapping store.ErrNotInstalled if
// sqlws's tables are removed from the database under it (there is nothing left to
// tail, and serving on would hand clients a stream that silently stopped), and other
// errors only when it cannot start for a reason retrying cannot fix. A storage fault
// at start (the file briefly gone, an I/O error) is retried with backoff, logged
// once: a restore or a rename must not end the server.
func (t *Tailer) Run(ctx context.Context) error {
	var startFail faillog.Episode
	wait := 10 * time.Millisecond
	for {
		err := t.run(ctx, &startFail)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if !errors.IsKind(err, errors.Unavailable) || errors.Is(err, store.ErrNotInstalled) {
			return err
		}
		startFail.Fail(t.opts.Logger, "tail changelog: cannot start; will retry", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// run tails until ctx is done or an error; startFail hears when it has started.
func (t *Tailer) run(ctx context.Context, startFail *faillog.Episode) error {
	conn, err := t.db.Reader().Conn(ctx)
	if err != nil {
		return store.Classify("tail changelog", err)
	}
	defer conn.Close()
	// Prepared once: the poll runs hundreds of times a second, and compiling it each
	// time would cost more than running it. Plain PRAGMA statements, not the
	// pragma_data_version table-valued functions: those compile a PRAGMA statement
	// inside every time they run (a sixth of the server's CPU beside a busy writer).
	pollData, err := conn.PrepareContext(ctx, "PRAGMA data_version")
	if err != nil {
		return store.Classify("tail changelog", err)
	}
	defer pollData.Close()
	pollSchema, err := conn.PrepareContext(ctx, "PRAGMA schema_version")
	if err != nil {
		return store.Classify("tail changelog", err)
	}
	defer pollSchema.Close()
	changes, err := conn.PrepareContext(ctx, changesSQL)
	if err != nil {
		return store.Classify("tail changelog", err)
	}
	defer changes.Close()
	drops, err := conn.PrepareContext(ctx, dropsSQL)
	if err != nil {
		return store.Classify("tail changelog", err)
	}
	defer drops.Close()

	startFail.OK(t.opts.Logger, "tail changelog: started")
	pollCtx := context.WithoutCancel(ctx)
	var dataVersion, schemaVersion int64 = -1, -1
	// dropsDue is set until the drops recorded by the last commit seen are read: a
	// trigger sync records them in a commit of its own, which moves data_version.
	dropsDue := false
	var pollFail, drainFail, dropsFail faillog.Episode
	interval := t.opts.Poll
	var walWrites chan struct{} // nil (never ready) without a watcher
	w := watchWAL(t.db.Path())
	if w != nil {
		defer w.Close()
		walWrites = w.C
		interval = max(t.opts.IdlePoll, t.opts.Poll)
	}
	// burst is the wait before the next quick re-poll after a WAL write, doubling up to
	// the idle interval (0: none pending). The write that woke us may belong to a
	// commit that is not visible yet: SQLite makes a commit visible only after its
	// last frame is written and, with synchronous=FULL, synced, and that raises no
	// event. Doubling covers a slow sync without polling fast for long.
	var burst time.Duration
	armFailed := false // the watch could not be set: poll meanwhile
	var lastDrain time.Time
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		if w != nil {
			// Before the poll: a commit after it must wake us.
			if err := w.Arm(); err != nil {
				if !armFailed {
					t.opts.Logger.Warn("tail changelog: cannot watch the WAL file; polling instead", "err", err, "every", t.opts.Poll)
				}
				armFailed = true
			} else {
				armFailed = false
			}
		}
		var dv int64
		sv := schemaVersion
		// Without a cancelable context database/sql starts no watcher goroutine per
		// query; the poll takes microseconds, so cancellation has nothing to interrupt.
		err := pollData.QueryRowContext(pollCtx).Scan(&dv)
		if err == nil && dv != dataVersion {
			// The schema can only have changed in a commit, and every commit by
			// another connection moves data_version.
			err = pollSchema.QueryRowContext(pollCtx).Scan(&sv)
		}
		if err == nil && sv != schemaVersion {
			// The schema is capture's business; the tailer only passes the news on,
			// and checks that the changelog it reads still exists.
			if t.opts.SchemaChanged != nil {
				t.opts.SchemaChanged()
			}
			err = store.RequireInstalled(pollCtx, conn, store.ChangesTable, store.DropsTable)
			if errors.Is(err, store.ErrNotInstalled) {
				return fmt.Errorf("tail changelog: %w", err)
			}
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			pollFail.Fail(t.opts.Logger, "tail changelog: poll failing; will retry", err)
		default:
			pollFail.OK(t.opts.Logger, "tail changelog: poll works again")
			schemaVersion = sv
			if dv != dataVersion {
				if err := t.drain(ctx, changes); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					drainFail.Fail(t.opts.Logger, "tail changelog: read failing; will retry", err)
				} else {
					drainFail.OK(t.opts.Logger, "tail changelog: reading again")
					dataVersion = dv
					lastDrain = time.Now()
					dropsDue = true
				}
			}
			if dropsDue {
				if err := t.readDrops(pollCtx, drops); err != nil {
					dropsFail.Fail(t.opts.Logger, "tail changelog: read dropped tables failing; will retry", err)
				} else {
					dropsFail.OK(t.opts.Logger, "tail changelog: reading dropped tables again")
					dropsDue = false
				}
			}
		}
		wait := interval
		if burst > 0 {
			wait = burst
			if burst *= 2; burst >= interval {
				burst = 0
			}
		}
		if armFailed {
			wait = t.opts.Poll
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-walWrites:
			burst = t.opts.Poll
			// Coalesce: a writer committing in a tight loop would otherwise cost a wake,
			// a poll and a read per commit. Reading at most once per coalesceWAL
			// batches them; a commit after a quiet spell is read at once.
			if d := time.Until(lastDrain.Add(coalesceWAL)); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return nil
				case <-timer.C:
				}
			}
		case <-t.db.Written():
			// Our own writer committed; waking now saves up to a poll interval.
			dataVersion = -1
		}
	}
}

// dropsSQL reads the dropped tables recorded after a rowid.
const dropsSQL = "SELECT rowid, seq, tbl FROM sqlws_drops WHERE rowid > ? ORDER BY rowid"

// readDrops hands the table drops recorded since the last call to opts.Dropped. st is
// dropsSQL, prepared.
func (t *Tailer) readDrops(ctx context.Context, st *sql.Stmt) error {
	if t.opts.Dropped == nil {
		return nil
	}
	rows, err := st.QueryContext(ctx, t.dropsRead)
	if err != nil {
		return store.Classify("read dropped tables", err)
	}
	defer rows.Close()
	var drops []models.Drop
	last := t.dropsRead
	for rows.Next() {
		var dr models.Drop
		if err := rows.Scan(&last, &dr.Seq, &dr.Table); err != nil {
			return store.Classify("read dropped tables", err)
		}
		drops = append(drops, dr)
	}
	if err := rows.Err(); err != nil {
		return store.Classify("read dropped tables", err)
	}
	t.dropsRead = last
	if len(drops) > 0 {
		for _, dr := range drops {
			t.opts.Logger.Info("captured table gone: subscriptions naming it end", "table", dr.Table, "after_seq", dr.Seq)
		}
		t.opts.Dropped(drops)
	}
	return nil
}

// coalesceWAL is the shortest time between two reads woken by other processes'
// commits. Under a writer committing thousands of times a second, 3 ms instead of 1 ms
// cut the server's CPU from 17 % to 12 % of a core and the writer's loss of throughput
// to sqlws from about 10 % to 2-4 % (both share two cores; the writer's throughput
// with sqlws serving ÷ without, 1-row transactions).
// The cost is at most that much latency, and only while commits arrive faster.
const coalesceWAL = 3 * time.Millisecond

// drain reads and delivers everything after t.last, a batch per statement. The
// statements run without ctx (as the poll does: with a cancelable context the driver
// starts a watcher goroutine per statement); ctx is checked between batches instead.
func (t *Tailer) drain(ctx context.Context, changes *sql.Stmt) error {
	qctx := context.WithoutCancel(ctx)
	for ctx.Err() == nil {
		batch, more, err := t.log.readChanges(qctx, changes, t.last.Load(), t.opts.Batch, t.opts.BatchBytes, false)
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		t.sink(batch)
		t.last.Store(batch[len(batch)-1].Seq)
		if !more {
			return nil
		}
	}
	return ctx.Err()
}
