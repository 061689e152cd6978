package changelog

import (
	"context"
	"database/sql"
	"log/slog"
	"time"

	"github.com/sqlws/sqlws/store"
)

// Retention bounds the changelog by age and/or count. Zero values disable a bound.
type Retention struct {
	MaxAge   time.Duration // drop changes older than this
	MaxCount int64         // keep at most this many of the newest changes
	// Batch is how many rows one short delete transaction removes, so pruning never
	// holds the write lock long enough to stall the application. Default 500.
	Batch int
}

// Enabled reports whether any bound is set.
func (r Retention) Enabled() bool { return r.MaxAge > 0 || r.MaxCount > 0 }

// Prune deletes changes outside the retention bounds, never one with seq > upTo (the
// tailer's position: a change is not pruned before sqlws has read it). It deletes in
// small transactions and returns how many rows it removed.
func (l *Log) Prune(ctx context.Context, r Retention, upTo int64) (int64, error) {
	if !r.Enabled() {
		return 0, nil
	}
	if r.Batch <= 0 {
		r.Batch = 500
	}
	cutoff, err := l.pruneCutoff(ctx, r)
	if err != nil {
		return 0, err
	}
	cutoff = min(cutoff, upTo)
	var total int64
	for cutoff > 0 {
		var n int64
		err := l.db.Write(ctx, "prune changelog", func(tx *sql.Tx) error {
			// Never the newest row: seq has no AUTOINCREMENT counter (migration 00004),
			// so the newest row is what keeps the next seq from reusing a number (the
			// changelog's head guard, migration 00004, would skip it anyway).
			res, err := tx.ExecContext(ctx, `DELETE FROM sqlws_changes WHERE seq IN
				(SELECT seq FROM sqlws_changes WHERE seq <= ? AND seq < (SELECT max(seq) FROM sqlws_changes)
				 ORDER BY seq LIMIT ?)`, cutoff, r.Batch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < int64(r.Batch) {
			break
		}
	}
	return total, nil
}

// pruneCutoff is the highest seq that the bounds allow deleting.
func (l *Log) pruneCutoff(ctx context.Context, r Retention) (int64, error) {
	var cutoff int64
	if r.MaxCount > 0 {
		head, err := store.Head(ctx, l.db.Reader())
		if err != nil {
			return 0, err
		}
		cutoff = max(cutoff, head-r.MaxCount)
	}
	if r.MaxAge > 0 {
		limit := time.Now().Add(-r.MaxAge).UnixMilli()
		var s sql.NullInt64
		// ts is not indexed; seq order is commit order, so the newest too-old change is
		// found by walking from the oldest end and stopping at the first young one.
		err := l.db.Reader().QueryRowContext(ctx,
			`SELECT (SELECT seq FROM sqlws_changes WHERE ts >= ? ORDER BY seq LIMIT 1)`, limit).Scan(&s)
		if err != nil {
			return 0, store.Classify("prune changelog", err)
		}
		if s.Valid {
			cutoff = max(cutoff, s.Int64-1)
		} else {
			// Every retained change is too old.
			head, err := store.Head(ctx, l.db.Reader())
			if err != nil {
				return 0, err
			}
			cutoff = max(cutoff, head)
		}
	}
	return cutoff, nil
}

// RunRetention prunes every interval until ctx is done. upTo reports the highest seq
// that may be pruned (the tailer's position).
func (l *Log) RunRetention(ctx context.Context, r Retention, interval time.Duration, upTo func() int64, log *slog.Logger) {
	if !r.Enabled() {
		return
	}
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := l.Prune(ctx, r, upTo()); err != nil && ctx.Err() == nil {
			log.Warn("prune changelog", "err", err)
		} else if n > 0 {
			log.Debug("pruned changelog", "rows", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
