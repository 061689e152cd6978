// Package changelog owns sqlws_changes once capture has written to it: the Tailer,
// which reads new changes in seq order as they commit (watching the WAL file, so that
// other programs' commits are read at once without polling fast), encodes each once
// as its protocol record and hands it to the fan-out, along with the tables recorded
// as dropped; the range reads of subscribers catching up and of GET /api/changes,
// which never step over a hole (Log, the fan-out's Source); and Retention, which
// bounds the log's size.
package changelog

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/store"
)

// Log is the changelog of one database: its extent, its ranges of changes and its
// stream id. It is the history behind the fan-out window.
type Log struct {
	db *store.DB

	changesMu sync.Mutex
	changes   *sql.Stmt // changesSQL on the reader pool, prepared on first use

	shapesMu sync.Mutex
	shapes   map[int64]*capture.Shape // native rows' shapes, read once each
}

var _ fanout.Source = (*Log)(nil)

// New returns the changelog of db, which must be migrated (store.DB.Migrate) and
// have its stream id loaded (store.DB.LoadMeta) before it is read.
func New(db *store.DB) *Log { return &Log{db: db} }

// Close releases the prepared statement. The store's pools outlive the log.
func (l *Log) Close() error {
	l.changesMu.Lock()
	defer l.changesMu.Unlock()
	if l.changes == nil {
		return nil
	}
	err := l.changes.Close()
	l.changes = nil
	return err
}

// StreamID identifies the change stream: random, created once per database by the
// first migration, stable across restarts.
func (l *Log) StreamID() string { return l.db.StreamID() }

// Position reads the changelog's head and oldest retained seq in one read transaction.
func (l *Log) Position(ctx context.Context) (models.Position, error) {
	var p models.Position
	var oldest sql.NullInt64
	err := l.db.Reader().QueryRowContext(ctx,
		store.HeadSQL+`, (SELECT min(seq) FROM sqlws_changes)`).
		Scan(&p.Head, &oldest)
	if err != nil {
		return p, store.Classify("read changelog position", err)
	}
	p.Oldest = p.Head + 1
	if oldest.Valid {
		p.Oldest = oldest.Int64
	}
	return p, nil
}

// ReadChanges returns up to limit changes with seq > after, in seq order, each encoded
// once as its protocol JSON. It stops before the encoded output would pass maxBytes
// (but one change always comes back), which bounds memory for wide rows. It runs as one
// short statement and holds no transaction afterwards.
//
// The changes are consecutive, after+1 onwards: at the first seq that does not follow
// the one before (retention pruned it, or someone deleted rows by hand), it stops and
// returns what came before with models.ErrGap. A reader must never step over a hole
// silently.
func (l *Log) ReadChanges(ctx context.Context, after int64, limit, maxBytes int) ([]models.Encoded, error) {
	st, err := l.changesStmt(ctx)
	if err != nil {
		return nil, store.Classify("read changelog", err)
	}
	out, _, err := l.readChanges(ctx, st, after, limit, maxBytes, true)
	return out, err
}

// changesSQL reads a page of the changelog. It is prepared once (per reader
// connection, through database/sql's statement cache) because catching a subscriber
// up runs it once per page and compiling it cost more than a page's worth of row
// decoding. "*", not a column list: capture adds value columns as wider tables are
// captured (capture/native.go), and SQLite re-prepares the statement when they come.
const changesSQL = `SELECT * FROM sqlws_changes WHERE seq > ? ORDER BY seq LIMIT ?`

// changeColumns are the changelog's leading columns, in order; the value columns
// (v0, v1, …) follow.
var changeColumns = [...]string{"seq", "tbl", "op", "pk", "old", "new", "ts", "sid"}

// shape returns the shape of native rows with shape id sid.
func (l *Log) shape(ctx context.Context, sid int64) (*capture.Shape, error) {
	l.shapesMu.Lock()
	defer l.shapesMu.Unlock()
	if s, ok := l.shapes[sid]; ok {
		return s, nil
	}
	var tbl, cols, key, types string
	err := l.db.Reader().QueryRowContext(ctx, `SELECT tbl, cols, key, types FROM sqlws_shapes WHERE sid = ?`, sid).
		Scan(&tbl, &cols, &key, &types)
	if err != nil {
		return nil, fmt.Errorf("read the shape of changelog rows %d: %w", sid, err)
	}
	s, err := capture.ParseShape(sid, tbl, cols, key, types)
	if err != nil {
		return nil, err
	}
	if l.shapes == nil {
		l.shapes = map[int64]*capture.Shape{}
	}
	l.shapes[sid] = s
	return s, nil
}

// changesStmt returns changesSQL prepared on the reader pool, preparing it on first
// use: the changelog does not exist before Migrate, so Open cannot prepare it.
func (l *Log) changesStmt(ctx context.Context) (*sql.Stmt, error) {
	l.changesMu.Lock()
	defer l.changesMu.Unlock()
	if l.changes != nil {
		return l.changes, nil
	}
	st, err := l.db.Reader().PrepareContext(ctx, changesSQL)
	if err != nil {
		return nil, err
	}
	l.changes = st
	return st, nil
}

// readChanges runs st (changesSQL, prepared) and encodes the rows: native rows from
// their values and shape, JSON-layout rows from their images. A mark (a row that only
// holds a seq) comes back as an entry without JSON, which no subscriber receives. With
// contiguous it stops at a hole (see ReadChanges); without, it reads across holes,
// for the tailer, whose window restarts at a jump (fanout.Window.Publish) so that
// readers find the hole here. more reports that it stopped at limit or maxBytes:
// there may be more.
func (l *Log) readChanges(ctx context.Context, st *sql.Stmt, after int64, limit, maxBytes int, contiguous bool) (out []models.Encoded, more bool, err error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := st.QueryContext(ctx, after, limit)
	if err != nil {
		return nil, false, store.Classify("read changelog", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, false, store.Classify("read changelog", err)
	}
	for i, want := range changeColumns {
		if i >= len(cols) || cols[i] != want {
			return nil, false, fmt.Errorf("read changelog: columns %v, want %v first (run sqlws migrate up)", cols, changeColumns)
		}
	}
	out = make([]models.Encoded, 0, min(limit, 256))
	total := 0
	var (
		seq, ts     int64
		sid         sql.NullInt64
		tbl, op     string
		rtbl, rop   sql.RawBytes
		pk, old, nw sql.RawBytes
		key         []byte // scratch for keys rebuilt from images (capture.AppendKey)
	)
	vals := make([]any, len(cols)-len(changeColumns))
	dest := append(make([]any, 0, len(cols)), &seq, &rtbl, &rop, &pk, &old, &nw, &ts, &sid)
	for i := range vals {
		dest = append(dest, &vals[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, false, store.Classify("read changelog", err)
		}
		if contiguous && seq != after+1 {
			return out, false, models.ErrGap
		}
		after = seq
		op = internOp(rop)
		if op == "mark" {
			out = append(out, models.Encoded{Seq: seq})
			continue
		}
		var buf []byte
		if sid.Valid {
			shape, err := l.shape(ctx, sid.Int64)
			if err != nil {
				return nil, false, err
			}
			tbl = shape.Table
			if buf, err = capture.AppendNativeChange(make([]byte, 0, 256), seq, op, shape, vals, ts); err != nil {
				return nil, false, err
			}
		} else {
			// Runs of changes to one table share its name, and op is one of three: no
			// string allocated per row for either (a twentieth of a resume's CPU).
			if string(rtbl) != tbl {
				tbl = string(rtbl)
			}
			key = capture.AppendKey(key[:0], pk, op, old, nw)
			buf = make([]byte, 0, 64+len(tbl)+len(key)+len(old)+len(nw))
			buf = capture.AppendChange(buf, seq, tbl, op, key, old, nw, ts)
		}
		if maxBytes > 0 && len(out) > 0 && total+len(buf) > maxBytes {
			return out, true, rows.Err() // the bound holds, except that one change always goes out
		}
		out = append(out, models.Encoded{Seq: seq, Table: tbl, JSON: buf})
		total += len(buf)
	}
	if err := rows.Err(); err != nil {
		return nil, false, store.Classify("read changelog", err)
	}
	return out, len(out) == limit, nil
}

// internOp returns op as one of the three constant strings it always is.
func internOp(op []byte) string {
	switch string(op) {
	case "insert":
		return "insert"
	case "update":
		return "update"
	case "delete":
		return "delete"
	case "mark":
		return "mark"
	}
	return string(op)
}

// Page is a range of the changelog and the log's extent, read in one transaction.
type Page struct {
	Changes []models.Encoded
	Head    int64
	Oldest  int64
	// Gap is set when the changelog has a hole after the last of Changes (or right
	// after since, when there are none): the reader cannot continue past it.
	Gap bool
}

// Since reads up to limit changes after since (at most about maxBytes of them), with
// the changelog's head and oldest retained seq, in one read transaction: what
// GET /api/changes answers.
func (l *Log) Since(ctx context.Context, since int64, limit, maxBytes int) (Page, error) {
	var p Page
	// Prepared before the transaction takes its connection: preparing may need
	// another one from the pool.
	st, err := l.changesStmt(ctx)
	if err != nil {
		return p, store.Classify("read changes", err)
	}
	err = l.db.Read(ctx, "read changes", func(tx *sql.Tx) error {
		var oldest sql.NullInt64
		err := tx.QueryRowContext(ctx, store.HeadSQL+`, (SELECT min(seq) FROM sqlws_changes)`).Scan(&p.Head, &oldest)
		if err != nil {
			return err
		}
		p.Oldest = p.Head + 1
		if oldest.Valid {
			p.Oldest = oldest.Int64
		}
		p.Changes, _, err = l.readChanges(ctx, tx.StmtContext(ctx, st), since, limit, maxBytes, true)
		if errors.Is(err, models.ErrGap) {
			p.Gap, err = true, nil
		}
		return err
	})
	return p, err
}
