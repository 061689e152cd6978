package db_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/sqlws/sqlws/db"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
)

// TestTailerSyncBackoff: while trigger syncs fail (another process holds the write
// lock), the syncer tries and warns at most once per back-off interval, doubling,
// however often the tailer and the schema watcher are woken, and syncs once the lock
// is released.
func TestTailerSyncBackoff(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	logs := &logBuffer{}
	d := open(t, path, db.Options{BusyTimeout: 10 * time.Millisecond, Logger: logs.logger()})
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
	tl := d.NewTailer(0, func([]models.Encoded) {}, db.TailerOptions{Logger: logs.logger()})
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	runCapture(t, ctx, d)
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
				d.Wrote()
				d.Schema().Poke()
				time.Sleep(time.Millisecond)
			}
		}
	})
	const warning = "sync capture triggers after a schema change; will retry"
	testenv.WaitFor(t, 20*time.Second, "five failed syncs", func() bool { return logs.count(warning) >= 5 })
	close(stopWake)
	wg.Wait()
	// However often it was woken, each attempt waited out the back-off the previous
	// failure set: 0.1, 0.2, 0.4, 0.8 s (capped at 5 s). Without the back-off every
	// wake-up retried, hundreds a second.
	times := logs.logTimes(t, warning)
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
	testenv.WaitFor(t, 10*time.Second, "the sync to succeed after the lock is released", func() bool { return d.Schema().Captured("b") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tailer: %v", err)
	}
}

// TestTailerStopsWhenUninstalled: sqlws's tables removed under a running tailer end
// it with ErrNotInstalled, after no more than a couple of warnings.
func TestTailerStopsWhenUninstalled(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	d := open(t, path, db.Options{})
	logs := &logBuffer{}
	tl := d.NewTailer(0, func([]models.Encoded) {}, db.TailerOptions{Logger: logs.logger()})
	done := make(chan error, 1)
	go func() { done <- tl.Run(context.Background()) }()
	other, err := db.Open(context.Background(), path, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, db.ErrNotInstalled) {
			t.Fatalf("tailer ended with %v, want ErrNotInstalled", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("tailer still running 15s after sqlws was uninstalled under it")
	}
	if n := logs.count("level=WARN"); n > 2 {
		t.Fatalf("%d warnings before stopping:\n%s", n, logs)
	}
}
