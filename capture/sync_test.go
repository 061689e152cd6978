package capture_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
)

// A trigger sync that fails (the write lock held past the busy timeout) is retried,
// so a table created meanwhile still gets captured.
func TestSyncRetriesFailedSync(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	logs := &logLines{ch: make(chan string, 64)}
	d := open(t, path, testdb.Options{BusyTimeout: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))})

	// Another program creates a table and then holds the write lock, so the first
	// sync after it, which would install the new table's triggers, times out.
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	if _, err := other.Exec("CREATE TABLE b(id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	hold, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec("INSERT INTO a DEFAULT VALUES"); err != nil { // takes the write lock
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan []models.Encoded, 16)
	tl := d.NewTailer(0, func(b []models.Encoded) { got <- b }, changelog.TailerOptions{})
	done := make(chan struct{})
	go func() { tl.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	d.RunCapture(t, ctx)

	logs.waitFor(t, "sync capture triggers after a schema change; will retry")
	if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'b';"); n != 0 {
		t.Fatal("sync succeeded while another connection held the write lock")
	}
	if err := hold.Commit(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitTriggers(t, path, "b")
	testenv.SQLite(t, path, "INSERT INTO b(v) VALUES ('captured');")
	deadline := time.After(10 * time.Second)
	for {
		select {
		case batch := <-got:
			for _, e := range batch {
				if e.Table == "b" {
					return
				}
			}
		case <-deadline:
			t.Fatal("the insert into b was not captured after the lock was released")
		}
	}
}

// logLines is an io.Writer for a slog handler that hands each line to a channel.
type logLines struct{ ch chan string }

func (l *logLines) Write(p []byte) (int, error) {
	select {
	case l.ch <- string(p):
	default: // never block the logger
	}
	return len(p), nil
}

func (l *logLines) waitFor(t *testing.T, substr string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case line := <-l.ch:
			if strings.Contains(line, substr) {
				return
			}
		case <-deadline:
			t.Fatalf("no log line with %q within 10s", substr)
		}
	}
}

// TestSyncBackoff: while trigger syncs fail (another process holds the write
// lock), the syncer tries and warns at most once per back-off interval, doubling,
// however often the tailer and the schema watcher are woken, and syncs once the lock
// is released.
func TestSyncBackoff(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	logs := &testdb.LogBuffer{}
	d := open(t, path, testdb.Options{BusyTimeout: 10 * time.Millisecond, Logger: logs.Logger()})
	other, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	if _, err := other.Exec("CREATE TABLE b(id INTEGER PRIMARY KEY)"); err != nil { // a schema change to sync
		t.Fatal(err)
	}
	hold, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec("INSERT INTO a DEFAULT VALUES"); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tl := d.NewTailer(0, func([]models.Encoded) {}, changelog.TailerOptions{Logger: logs.Logger()})
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	d.RunCapture(t, ctx)
	// Wake the tailer, and the schema watcher, as often as a busy writer's commits
	// would.
	stopWake := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stopWake:
				return
			default:
				d.Store.Wrote()
				d.Schema.Poke()
				time.Sleep(time.Millisecond)
			}
		}
	})
	const warning = "sync capture triggers after a schema change; will retry"
	testenv.WaitFor(t, 20*time.Second, "five failed syncs", func() bool { return logs.Count(warning) >= 5 })
	close(stopWake)
	wg.Wait()
	// However often it was woken, each attempt waited out the back-off the previous
	// failure set: 0.1, 0.2, 0.4, 0.8 s (capped at 5 s). Without the back-off every
	// wake-up retried, hundreds a second.
	times := logs.Times(t, warning)
	backoff := 100 * time.Millisecond
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < backoff*9/10 {
			t.Fatalf("sync attempt %d came %v after the previous one, want at least the back-off %v:\n%s", i+1, gap, backoff, logs)
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the sync to succeed after the lock is released", func() bool { return d.Schema.Captured("b") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tailer: %v", err)
	}
}

// REST's view of the tables does not depend on the tailer: without one, the schema
// watcher notices a new table within its poll, and the syncer captures it.
func TestSchemaFollowsWithoutTailer(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	d := open(t, path, testdb.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.RunCapture(t, ctx)
	testenv.SQLite(t, path, `CREATE TABLE b(id INTEGER PRIMARY KEY);`)
	testenv.WaitFor(t, 10*time.Second, "the schema to show the new table", func() bool { return d.Schema.Tracked("b") })
	testenv.WaitTriggers(t, path, "b")
}

// With the tailer running, a table created by another program gets its triggers
// within milliseconds of the commit: the tailer sees schema_version move and pokes
// the schema watcher, which wakes the syncer; none of them waits for a poll (the
// watcher's own poll is off here, so only the poke can explain a capture).
func TestNewTableCapturedPromptly(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	d := open(t, path, testdb.Options{SchemaPoll: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tl := d.NewTailer(0, func([]models.Encoded) {}, changelog.TailerOptions{})
	done := make(chan struct{})
	go func() { tl.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	d.RunCapture(t, ctx)

	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	var worst time.Duration
	for i := range 3 {
		table := fmt.Sprintf("t%d", i)
		start := time.Now()
		if _, err := other.Exec("CREATE TABLE " + table + "(id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
			t.Fatal(err)
		}
		for {
			var n int
			if err := other.QueryRow("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n >= 3 {
				break
			}
			if time.Since(start) > testenv.Timeout {
				t.Fatalf("%s: no triggers %v after it was created", table, testenv.Timeout)
			}
			time.Sleep(time.Millisecond)
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("slowest of 3 new tables captured in %v", worst)
}
