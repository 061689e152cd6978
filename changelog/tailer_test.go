package changelog_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/store"
)

// open opens the database at path and installs sqlws in it, as sqlws serve does.
func open(t testing.TB, path string, opts testdb.Options) *testdb.DB {
	t.Helper()
	return testdb.Install(t, path, opts)
}

// readAll reads every change after after.
func readAll(t testing.TB, d *testdb.DB, after int64) []models.Change {
	t.Helper()
	return d.ReadAll(t, after)
}

func TestTailerDeliversConcurrentWritersInOrder(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, w INTEGER, i INTEGER);`)
	d := open(t, path, testdb.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan []models.Encoded, 1024)
	tl := d.NewTailer(0, func(b []models.Encoded) { got <- b }, changelog.TailerOptions{Batch: 37})
	done := make(chan struct{})
	go func() { tl.Run(ctx); close(done) }()

	const writers, each = 4, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			var sql strings.Builder
			for i := range each {
				fmt.Fprintf(&sql, "INSERT INTO a(w, i) VALUES (%d, %d);\n", w, i)
			}
			if _, err := testenv.RunSQLite(path, sql.String()); err != nil {
				t.Error(err)
			}
		})
	}
	// And writes through sqlws's own writer connection at the same time.
	wg.Go(func() {
		for i := range each {
			err := d.Store.Write(ctx, "test insert", func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, "INSERT INTO a(w, i) VALUES (99, ?)", i)
				return err
			})
			if err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	want := int64((writers + 1) * each)
	var last int64
	deadline := time.After(30 * time.Second)
	for last < want {
		select {
		case b := <-got:
			for _, e := range b {
				if e.Seq != last+1 {
					t.Fatalf("seq %d after %d", e.Seq, last)
				}
				last = e.Seq
			}
		case <-deadline:
			t.Fatalf("tailer delivered up to %d of %d", last, want)
		}
	}
	cancel()
	<-done
	if tl.Last() != want {
		t.Fatalf("Last = %d, want %d", tl.Last(), want)
	}
}

// With the safety-net poll off (an hour), commits of other processes still reach the
// tailer: the WAL watch, one-shot and re-armed before every poll, must wake it for each
// one. Two writers take turns: a connection held open and sqlite3 CLI runs. (sqlws's
// own connections keep the WAL file in place; TestWALWatcher covers its re-creation.)
func TestTailerWakesForEveryOutsideCommit(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the WAL watch is Linux-only; elsewhere the tailer polls")
	}
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, v INTEGER);`)
	d := open(t, path, testdb.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan int64, 1024)
	tl := d.NewTailer(0, func(b []models.Encoded) {
		for _, e := range b {
			got <- e.Seq
		}
	}, changelog.TailerOptions{IdlePoll: time.Hour})
	done := make(chan struct{})
	go func() { tl.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	w, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.SetMaxOpenConns(1)
	var seq int64
	expect := func(how string) {
		t.Helper()
		seq++
		select {
		case s := <-got:
			if s != seq {
				t.Fatalf("%s: seq %d, want %d", how, s, seq)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: commit %d never reached the tailer (missed wake-up)", how, seq)
		}
	}
	for i := range 10 {
		// After each wake-up the tailer re-polls for a while (2, 4, … 64 ms later) in
		// case the commit that woke it was not visible yet. Writing after those polls
		// is the point of the test: only the watch can notice this commit. (Sleeping
		// too little would only let the test pass without the watch, never fail.)
		time.Sleep(150 * time.Millisecond)
		if i%2 == 0 {
			if _, err := w.Exec("INSERT INTO a(v) VALUES (?)", i); err != nil {
				t.Fatal(err)
			}
			expect("held connection")
		} else {
			testenv.SQLite(t, path, fmt.Sprintf("INSERT INTO a(v) VALUES (%d);", i))
			expect("sqlite3 CLI")
		}
	}
}

// TestTailerStopsWhenUninstalled: sqlws's tables removed under a running tailer end
// it with ErrNotInstalled, after no more than a couple of warnings.
func TestTailerStopsWhenUninstalled(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	d := open(t, path, testdb.Options{})
	logs := &testdb.LogBuffer{}
	tl := d.NewTailer(0, func([]models.Encoded) {}, changelog.TailerOptions{Logger: logs.Logger()})
	done := make(chan error, 1)
	go func() { done <- tl.Run(context.Background()) }()
	other, err := testdb.OpenErr(path, testdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Store.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrNotInstalled) {
			t.Fatalf("tailer ended with %v, want ErrNotInstalled", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("tailer still running 15s after sqlws was uninstalled under it")
	}
	if n := logs.Count("level=WARN"); n > 2 {
		t.Fatalf("%d warnings before stopping:\n%s", n, logs)
	}
}

// TestTailerStartsWhenTheFileReturns: a tailer started while the database file is
// briefly gone (renamed, being restored) waits for it instead of ending the server,
// and then delivers what is written.
func TestTailerStartsWhenTheFileReturns(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	d := open(t, path, testdb.Options{})
	// No idle reader connection may still hold the file open: the tailer's must be a
	// new one, opened while the file is gone.
	d.Store.Reader().SetMaxIdleConns(0)
	if err := os.Rename(path, path+".away"); err != nil {
		t.Fatal(err)
	}
	d.Store.Reader().SetMaxIdleConns(8)
	logs := &testdb.LogBuffer{}
	got := make(chan []models.Encoded, 16)
	tl := d.NewTailer(0, func(b []models.Encoded) { got <- b }, changelog.TailerOptions{Logger: logs.Logger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tailer ended with %v", err)
		}
	}()
	if !logs.WaitFor("cannot start; will retry", 15*time.Second) {
		t.Fatalf("no retry logged while the file was gone:\n%s", logs)
	}
	select {
	case err := <-done:
		t.Fatalf("tailer ended while the file was gone: %v", err)
	default:
	}
	if err := os.Rename(path+".away", path); err != nil {
		t.Fatal(err)
	}
	if _, err := testenv.RunSQLite(path, "INSERT INTO a VALUES (1);"); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if len(b) != 1 || b[0].Table != "a" {
			t.Fatalf("got %+v, want the one insert", b)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("nothing delivered 15s after the file came back:\n%s", logs)
	}
}
