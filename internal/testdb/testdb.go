// Package testdb opens a sqlws database for tests with every layer wired as sqlws
// serve wires it: the store, the live schema and trigger sync, the changelog and the
// CRUD layer.
package testdb

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/crud"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/store"
)

// Options configure Open: the store's and capture's options in one.
type Options struct {
	BusyTimeout time.Duration
	Tables      []string      // capture.Options.Tables
	SchemaPoll  time.Duration // capture.Options.Poll
	Lock        store.LockMode
	ReadOnly    bool
	Logger      *slog.Logger
}

// DB is a database open in every layer.
type DB struct {
	Store  *store.DB
	Schema *capture.Schema
	Syncer *capture.Syncer
	Log    *changelog.Log
	CRUD   *crud.DB
}

// Open opens the database at path without installing anything; Close (or the end of
// the test) closes it.
func Open(t testing.TB, path string, opts Options) *DB {
	t.Helper()
	d, err := OpenErr(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// OpenErr is Open for a test that expects it to fail; the caller closes the DB.
func OpenErr(path string, opts Options) (*DB, error) {
	st, err := store.Open(context.Background(), path, store.Options{BusyTimeout: opts.BusyTimeout, Lock: opts.Lock, ReadOnly: opts.ReadOnly, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	schema := capture.NewSchema(st, capture.Options{Tables: opts.Tables, Poll: opts.SchemaPoll, Logger: opts.Logger})
	log := changelog.New(st)
	return &DB{Store: st, Schema: schema, Syncer: capture.NewSyncer(schema), Log: log, CRUD: crud.New(st, schema, log)}, nil
}

// Install opens the database at path and installs sqlws in it (migrations, stream id,
// capture triggers), as sqlws serve does at start-up.
func Install(t testing.TB, path string, opts Options) *DB {
	t.Helper()
	d := Open(t, path, opts)
	if _, err := d.Syncer.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

// Close closes every layer. It may be called more than once.
func (d *DB) Close() error {
	d.CRUD.Close()
	d.Log.Close()
	return d.Store.Close()
}

// NewTailer is changelog.Log.NewTailer, poking the schema watcher on schema changes as
// sqlws serve's tailer does.
func (d *DB) NewTailer(after int64, sink func([]models.Encoded), opts changelog.TailerOptions) *changelog.Tailer {
	if opts.SchemaChanged == nil {
		opts.SchemaChanged = d.Schema.Poke
	}
	return d.Log.NewTailer(after, sink, opts)
}

// RunCapture runs the schema watcher and the trigger syncer, as sqlws serve does,
// until ctx is done; the test's cleanup waits for them to stop.
func (d *DB) RunCapture(t testing.TB, ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { d.Schema.Run(ctx) })
	wg.Go(func() { d.Syncer.Run(ctx) })
	t.Cleanup(wg.Wait)
}

// ReadAll reads every change after after, decoded, checking that each record agrees
// with its envelope.
func (d *DB) ReadAll(t testing.TB, after int64) []models.Change {
	t.Helper()
	enc, err := d.Log.ReadChanges(context.Background(), after, 100000, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]models.Change, 0, len(enc))
	for _, e := range enc {
		if e.JSON == nil {
			continue // a mark: it holds a seq, no subscriber sees it
		}
		var c models.Change
		if err := json.Unmarshal(e.JSON, &c); err != nil {
			t.Fatalf("record %d is not valid JSON: %v\n%s", e.Seq, err, e.JSON)
		}
		if c.Seq != e.Seq || c.Table != e.Table {
			t.Fatalf("record %s disagrees with its envelope seq=%d table=%q", e.JSON, e.Seq, e.Table)
		}
		out = append(out, c)
	}
	return out
}

// LogBuffer is a concurrency-safe log sink for a slog text handler.
type LogBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{} // closed and replaced on each write
}

// Write appends p: the handler writes one line at a time.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.written != nil {
		close(l.written)
		l.written = nil
	}
	return l.b.Write(p)
}

// WaitFor waits up to timeout for a line containing substr; it reports whether one
// came.
func (l *LogBuffer) WaitFor(substr string, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		if strings.Contains(l.b.String(), substr) {
			l.mu.Unlock()
			return true
		}
		if l.written == nil {
			l.written = make(chan struct{})
		}
		ch := l.written
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// String is everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Count is the number of log lines containing every one of substrs.
func (l *LogBuffer) Count(substrs ...string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		all := line != ""
		for _, s := range substrs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

// Logger is a text logger, debug level and up, writing to l.
func (l *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Times returns the time= of each log line containing substr.
func (l *LogBuffer) Times(t testing.TB, substr string) []time.Time {
	t.Helper()
	var out []time.Time
	for _, line := range strings.Split(l.String(), "\n") {
		if !strings.Contains(line, substr) {
			continue
		}
		f, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		ts, err := time.Parse(time.RFC3339Nano, f)
		if err != nil {
			t.Fatalf("log line without a time: %q", line)
		}
		out = append(out, ts)
	}
	return out
}
