package db_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/db"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
)

// open opens, migrates and installs triggers on the database at path.
func open(t testing.TB, path string, opts db.Options) *db.DB {
	t.Helper()
	ctx := context.Background()
	d, err := db.Open(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Install(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}

func readAll(t testing.TB, d *db.DB, after int64) []models.Change {
	t.Helper()
	enc, err := d.ReadChanges(context.Background(), after, 100000, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]models.Change, len(enc))
	for i, e := range enc {
		if err := json.Unmarshal(e.JSON, &out[i]); err != nil {
			t.Fatalf("record %d is not valid JSON: %v\n%s", e.Seq, err, e.JSON)
		}
		if out[i].Seq != e.Seq || out[i].Table != e.Table {
			t.Fatalf("record %s disagrees with its envelope seq=%d table=%q", e.JSON, e.Seq, e.Table)
		}
	}
	return out
}

func TestSyncTriggersIdempotentAndRegenerates(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, x TEXT); CREATE TABLE b(k TEXT, v BLOB);`)
	d := open(t, path, db.Options{})
	ctx := context.Background()

	res, err := d.SyncTriggers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 0 || res.Dropped != 0 {
		t.Fatalf("second sync changed triggers: %+v", res)
	}
	if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM sqlite_master WHERE type='trigger' AND name LIKE 'sqlws%';"); n != 6 {
		t.Fatalf("triggers = %d, want 6", n)
	}

	testenv.SQLite(t, path, `ALTER TABLE a ADD COLUMN y INTEGER DEFAULT 7;`)
	res, err = d.SyncTriggers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 3 || res.Dropped != 3 {
		t.Fatalf("sync after ADD COLUMN: %+v, want 3 created and 3 dropped", res)
	}
	testenv.SQLite(t, path, `INSERT INTO a(x) VALUES ('hi');`)
	ch := readAll(t, d, 0)
	if len(ch) != 1 || string(ch[0].New) != `{"id":1,"x":"hi","y":7}` {
		t.Fatalf("after ADD COLUMN got %+v", ch)
	}

	// Dropping a table drops its triggers with it; the next sync forgets the table.
	testenv.SQLite(t, path, `DROP TABLE b;`)
	if _, err := d.SyncTriggers(ctx); err != nil {
		t.Fatal(err)
	}
	if d.Tracked("b") || !d.Tracked("a") {
		t.Fatalf("tracked after DROP TABLE b: a=%v b=%v", d.Tracked("a"), d.Tracked("b"))
	}
}

func TestStorageClassesRoundTripFromCLI(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE v(id INTEGER PRIMARY KEY, x);`)
	d := open(t, path, db.Options{})
	testenv.SQLite(t, path, `INSERT INTO v(id, x) VALUES
		(1, 9223372036854775807), (2, -9223372036854775808), (3, 0.1 + 0.2), (4, 1e300),
		(5, 9e999), (6, -9e999), (7, 'héllo "q" 😀'||char(10)||'x'), (8, NULL), (9, x'00ff10'),
		(10, 2.5), (11, 0.1), (12, 5e-324);`)
	want := []string{
		`9223372036854775807`, `-9223372036854775808`, `0.30000000000000004`, `1e+300`,
		`{"$real":"Infinity"}`, `{"$real":"-Infinity"}`, `"héllo \"q\" 😀\nx"`, `null`, `{"$blob":"00FF10"}`,
		`2.5`, `0.1`, ``,
	}
	ch := readAll(t, d, 0)
	if len(ch) != len(want) {
		t.Fatalf("got %d changes, want %d", len(ch), len(want))
	}
	for i, c := range ch {
		var row map[string]json.RawMessage
		if err := json.Unmarshal(c.New, &row); err != nil {
			t.Fatal(err)
		}
		got := string(row["x"])
		if want[i] != "" && got != want[i] {
			t.Errorf("row %d: x = %s, want %s", i+1, got, want[i])
		}
	}
	var subnormal struct{ X float64 }
	json.Unmarshal(ch[11].New, &subnormal)
	if subnormal.X != 5e-324 {
		t.Errorf("5e-324 came back as %v (%s)", subnormal.X, ch[11].New)
	}
}

func TestKeysAndOddIdentifiers(t *testing.T) {
	path := testenv.NewDB(t, `
		CREATE TABLE "we""ird 'tab' select" ("order" INTEGER, "sp ace" TEXT, "ünï" TEXT, PRIMARY KEY ("sp ace", "order"));
		CREATE TABLE kv (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
		CREATE TABLE plain (a, b);
		CREATE TABLE shadow (rowid TEXT, _rowid_ TEXT, v);`)
	d := open(t, path, db.Options{})
	testenv.SQLite(t, path, `
		INSERT INTO "we""ird 'tab' select" VALUES (3, 'x y', 'ü');
		INSERT INTO kv VALUES ('k1', 1); UPDATE kv SET v = 2 WHERE k = 'k1';
		INSERT INTO plain VALUES (1, 2); DELETE FROM plain;
		INSERT INTO shadow VALUES ('r', 's', 1);`)
	ch := readAll(t, d, 0)
	got := make([]string, len(ch))
	for i, c := range ch {
		got[i] = fmt.Sprintf("%s %s %s %s %s", c.Table, c.Op, c.PK, c.Old, c.New)
	}
	want := []string{
		`we"ird 'tab' select insert {"sp ace":"x y","order":3} null {"order":3,"sp ace":"x y","ünï":"ü"}`,
		`kv insert {"k":"k1"} null {"k":"k1","v":1}`,
		`kv update {"k":"k1"} {"k":"k1","v":1} {"k":"k1","v":2}`,
		`plain insert {"rowid":1} null {"rowid":1,"a":1,"b":2}`,
		`plain delete {"rowid":1} {"rowid":1,"a":1,"b":2} null`,
		`shadow insert {"oid":1} null {"oid":1,"rowid":"r","_rowid_":"s","v":1}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestConcurrentInstallOnOneFile(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY); CREATE TABLE b(id INTEGER PRIMARY KEY);`)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			ctx := context.Background()
			d, err := db.Open(ctx, path, db.Options{})
			if err != nil {
				errs <- err
				return
			}
			defer d.Close()
			if err := d.Migrate(ctx); err != nil {
				errs <- err
				return
			}
			if _, err := d.SyncTriggers(ctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM sqlite_master WHERE type='trigger';"); n != 6 {
		t.Fatalf("triggers = %d, want 6", n)
	}
	if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM sqlws_meta;"); n != 1 {
		t.Fatalf("meta rows = %d, want 1", n)
	}
	testenv.SQLite(t, path, "INSERT INTO a DEFAULT VALUES;")
	if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM sqlws_changes;"); n != 1 {
		t.Fatalf("one insert captured %d times", n)
	}
}

func TestUninstallAndMigrateDownLeaveWritesWorking(t *testing.T) {
	for _, mode := range []string{"uninstall", "down"} {
		t.Run(mode, func(t *testing.T) {
			path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, v);`)
			d := open(t, path, db.Options{})
			testenv.SQLite(t, path, "INSERT INTO a(v) VALUES (1);")
			var err error
			if mode == "uninstall" {
				err = d.Uninstall(context.Background())
			} else {
				// Each step down drops the capture triggers first, so writes keep working
				// at every step; all steps down remove every sqlws object.
				st, _ := d.MigrateStatus(context.Background())
				for range st {
					if err = d.MigrateDown(context.Background()); err != nil {
						break
					}
					testenv.SQLite(t, path, "INSERT INTO a(v) VALUES (0); DELETE FROM a WHERE v = 0;")
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			left := testenv.SQLite(t, path, "SELECT type || ' ' || name FROM sqlite_master WHERE name LIKE 'sqlws%' AND name != 'sqlws_goose_version';")
			if strings.TrimSpace(left) != "" {
				t.Fatalf("%s left sqlws objects:\n%s", mode, left)
			}
			// The application's writes must keep working, and its rows stay.
			testenv.SQLite(t, path, "INSERT INTO a(v) VALUES (2);")
			if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM a;"); n != 2 {
				t.Fatalf("rows = %d, want 2", n)
			}
		})
	}
}

func TestTailerDeliversConcurrentWritersInOrder(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, w INTEGER, i INTEGER);`)
	d := open(t, path, db.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan []models.Encoded, 1024)
	tl := d.NewTailer(0, func(b []models.Encoded) { got <- b }, db.TailerOptions{Batch: 37})
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
			err := d.Write(ctx, "test insert", func(tx *sql.Tx) error {
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

func TestPruneByCountAndAge(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	d := open(t, path, db.Options{})
	ctx := context.Background()
	testenv.SQLite(t, path, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1200) INSERT INTO a SELECT i FROM n;")

	// Nothing past upTo is pruned, whatever the bounds say.
	n, err := d.Prune(ctx, db.Retention{MaxCount: 100, Batch: 64}, 50)
	if err != nil || n != 50 {
		t.Fatalf("prune up to 50: n=%d err=%v", n, err)
	}
	n, err = d.Prune(ctx, db.Retention{MaxCount: 100, Batch: 64}, 1200)
	if err != nil || n != 1050 {
		t.Fatalf("prune to 100: n=%d err=%v", n, err)
	}
	pos, err := d.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pos.Head != 1200 || pos.Oldest != 1101 {
		t.Fatalf("position %+v, want head 1200 oldest 1101", pos)
	}
	// Age: make the first 40 retained changes old.
	testenv.SQLite(t, path, "UPDATE sqlws_changes SET ts = 0 WHERE seq <= 1140;")
	if n, err = d.Prune(ctx, db.Retention{MaxAge: time.Hour}, 1200); err != nil || n != 40 {
		t.Fatalf("prune by age: n=%d err=%v", n, err)
	}
	// Everything too old: the log empties but the head, and so seq, never goes back.
	testenv.SQLite(t, path, "UPDATE sqlws_changes SET ts = 0;")
	if _, err = d.Prune(ctx, db.Retention{MaxAge: time.Hour}, 1200); err != nil {
		t.Fatal(err)
	}
	pos, _ = d.Position(ctx)
	if pos.Head != 1200 || pos.Oldest != 1201 {
		t.Fatalf("after pruning all: %+v, want head 1200 oldest 1201", pos)
	}
	testenv.SQLite(t, path, "INSERT INTO a VALUES (5000);")
	if _, err := d.ReadChanges(ctx, 0, 10, 0); !errors.Is(err, models.ErrGap) {
		t.Fatalf("reading from 0 across the pruned changes: %v, want models.ErrGap", err)
	}
	if ch := readAll(t, d, 1200); len(ch) != 1 || ch[0].Seq != 1201 {
		t.Fatalf("after pruning all, next change = %+v, want seq 1201", ch)
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
	d := open(t, path, db.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan int64, 1024)
	tl := d.NewTailer(0, func(b []models.Encoded) {
		for _, e := range b {
			got <- e.Seq
		}
	}, db.TailerOptions{IdlePoll: time.Hour})
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

func TestStreamIDStableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	d1 := open(t, path, db.Options{})
	id := d1.StreamID()
	d1.Close()
	d2 := open(t, path, db.Options{})
	if id == "" || d2.StreamID() != id {
		t.Fatalf("stream id %q then %q", id, d2.StreamID())
	}
}

func TestTablesFlagRejectsUnknown(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	d, err := db.Open(context.Background(), path, db.Options{Tables: []string{"a", "nope"}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Migrate(context.Background())
	res, err := d.SyncTriggers(context.Background())
	if err != nil || len(res.Missing) != 1 || res.Missing[0] != "nope" || !d.Tracked("a") {
		t.Fatalf("res = %+v, err = %v; want nope missing and a tracked", res, err)
	}
}

// REPLACE removes conflicting rows without firing DELETE triggers; sqlws reports them
// as deletes anyway, and reports nothing extra for IGNORE or upserts.
func TestReplaceConflictDeletesAreCaptured(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE, n INT, a TEXT, b TEXT, j TEXT, UNIQUE(a, b));
		CREATE UNIQUE INDEX uj ON u(j COLLATE NOCASE);`)
	d := open(t, path, db.Options{})
	testenv.SQLite(t, path, `
		INSERT INTO u VALUES (1, 'a', 0, 'x', 'y', NULL), (2, 'b', 0, 'p', 'q', NULL);
		REPLACE INTO u VALUES (3, 'b', 0, NULL, NULL, NULL);          -- removes 2 (email)
		INSERT OR REPLACE INTO u VALUES (4, 'c', 0, 'x', 'y', NULL);  -- removes 1 (a,b)
		INSERT OR IGNORE INTO u VALUES (5, 'c', 0, NULL, NULL, NULL); -- nothing
		INSERT INTO u VALUES (6, 'c', 1, NULL, NULL, NULL) ON CONFLICT(email) DO UPDATE SET n = 9; -- updates 4
		UPDATE OR REPLACE u SET email = 'c' WHERE id = 3;       -- removes 4, updates 3
		INSERT OR REPLACE INTO u VALUES (3, 'z', 0, NULL, NULL, NULL); -- same pk: reported as insert of pk 3
		INSERT INTO u VALUES (50, 'm', 0, NULL, NULL, 'x'), (60, 'n', 0, NULL, NULL, NULL);
		UPDATE u SET id = 70 WHERE id = 50;                     -- key change: one update, no delete
		UPDATE OR REPLACE u SET id = 60 WHERE id = 70;          -- removes 60 (its rowid), updates 70 -> 60
		INSERT OR REPLACE INTO u VALUES (80, 'o', 0, NULL, NULL, 'X'); -- removes 60 (j, NOCASE index)
	`)
	var got []string
	for _, c := range readAll(t, d, 0) {
		got = append(got, fmt.Sprintf("%s %s", c.Op, c.PK))
	}
	want := []string{
		`insert {"id":1}`, `insert {"id":2}`,
		`delete {"id":2}`, `insert {"id":3}`,
		`delete {"id":1}`, `insert {"id":4}`,
		`update {"id":4}`,
		`delete {"id":4}`, `update {"id":3}`,
		`insert {"id":3}`,
		`insert {"id":50}`, `insert {"id":60}`,
		`update {"id":70}`,
		`delete {"id":60}`, `update {"id":60}`,
		`delete {"id":60}`, `insert {"id":80}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A replica built from the stream equals the table.
	rows := map[string]bool{}
	for _, c := range readAll(t, d, 0) {
		switch c.Op {
		case "delete":
			delete(rows, string(c.PK))
		case "update":
			var old struct{ ID int }
			json.Unmarshal(c.Old, &old)
			delete(rows, fmt.Sprintf(`{"id":%d}`, old.ID)) // the key may have changed
			rows[string(c.PK)] = true
		default:
			rows[string(c.PK)] = true
		}
	}
	if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM u;"); int(n) != len(rows) {
		t.Fatalf("replica has %d rows, table %d", len(rows), n)
	}
}

// The capture triggers test a column's storage classes in an order that depends on its
// affinity. Whatever the order, every class in every affinity must be captured as the
// value the table holds, read back here through database/sql, independently of the
// triggers' SQL.
func TestEveryClassInEveryAffinity(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, i INTEGER, t TEXT, r REAL, n NUMERIC, b BLOB, u);`)
	d := open(t, path, db.Options{})
	vals := []string{"7", "-2.5", "'txt'", "'12'", "x'0aff'", "NULL", "1e300", "-1e-310", "9e999", "0.1", "json('[1]')"}
	var sql strings.Builder
	for i, v := range vals {
		fmt.Fprintf(&sql, "INSERT INTO a VALUES (%d, %s, %[2]s, %[2]s, %[2]s, %[2]s, %[2]s);\n", i+1, v)
	}
	testenv.SQLite(t, path, sql.String())
	ch := readAll(t, d, 0)
	if len(ch) != len(vals) {
		t.Fatalf("got %d changes, want %d", len(ch), len(vals))
	}
	direct, err := sqlOpen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	cols := []string{"i", "t", "r", "n", "b", "u"}
	for k, c := range ch {
		var image map[string]json.RawMessage
		if err := json.Unmarshal(c.New, &image); err != nil {
			t.Fatal(err)
		}
		stored := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for j := range stored {
			ptrs[j] = &stored[j]
		}
		if err := direct.QueryRow(`SELECT i, t, r, n, b, u FROM a WHERE id = ?`, k+1).Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for j, col := range cols {
			if want := storedJSON(stored[j]); string(image[col]) != want {
				t.Errorf("value %s in column %s: captured %s, stored %s", vals[k], col, image[col], want)
			}
		}
	}
}

// storedJSON is how sqlws's row images write a value database/sql read.
func storedJSON(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case int64:
		return fmt.Sprint(v)
	case float64:
		if math.IsInf(v, 0) {
			if v > 0 {
				return `{"$real":"Infinity"}`
			}
			return `{"$real":"-Infinity"}`
		}
		b, _ := json.Marshal(v)
		if !strings.ContainsAny(string(b), ".e") {
			return string(b) + ".0" // SQLite writes a REAL with a decimal point
		}
		return string(b)
	case string:
		b, _ := json.Marshal(v)
		return string(b)
	case []byte:
		return fmt.Sprintf(`{"$blob":"%X"}`, v)
	}
	return fmt.Sprintf("unexpected %T", v)
}

func sqlOpen(path string) (*sql.DB, error) {
	return sql.Open("sqlite", "file:"+path+"?mode=ro")
}

// SQLite before 3.48 refuses functions with over 127 arguments; a json_object over a
// wide table's columns would make the schema unreadable to the 3.40 CLI.
func TestWideTableWritableFromOldCLI(t *testing.T) {
	var cols, vals []string
	for i := range 80 {
		cols = append(cols, fmt.Sprintf(`"c%d ""q"""`, i))
		switch i % 4 {
		case 0:
			vals = append(vals, fmt.Sprint(i))
		case 1:
			vals = append(vals, fmt.Sprintf("'t%d'", i))
		case 2:
			if r, ok := wideReals[i]; ok {
				vals = append(vals, r[0])
			} else {
				vals = append(vals, "NULL")
			}
		default:
			vals = append(vals, "x'0A'")
		}
	}
	path := testenv.NewDB(t, "CREATE TABLE w(id INTEGER PRIMARY KEY, "+strings.Join(cols, ", ")+");")
	d := open(t, path, db.Options{})
	testenv.SQLite(t, path, "INSERT INTO w VALUES (1, "+strings.Join(vals, ", ")+"); UPDATE w SET \"c0 \"\"q\"\"\" = 5 WHERE id = 1;")
	ch := readAll(t, d, 0)
	if len(ch) != 2 {
		t.Fatalf("got %d changes, want 2", len(ch))
	}
	var row map[string]json.RawMessage
	if err := json.Unmarshal(ch[1].New, &row); err != nil {
		t.Fatal(err)
	}
	if len(row) != 81 || string(row[`c0 "q"`]) != "5" || string(row[`c1 "q"`]) != `"t1"` ||
		string(row[`c2 "q"`]) != "null" || string(row[`c3 "q"`]) != `{"$blob":"0A"}` {
		t.Fatalf("wide row: %d keys, %s", len(row), ch[1].New)
	}
	// REALs take the concatenated object's own path (realText).
	for i, r := range wideReals {
		if got := string(row[fmt.Sprintf(`c%d "q"`, i)]); got != r[1] {
			t.Errorf("wide row: REAL %s captured as %s, want %s", r[0], got, r[1])
		}
	}
}

// wideReals are the REALs TestWideTableWritableFromOldCLI writes (SQL, then the JSON
// sqlws sends), by column.
var wideReals = map[int][2]string{
	6: {"0.5", "0.5"}, 14: {"(0.1+0.2)", "0.30000000000000004"}, 22: {"1e300", "1e+300"},
	30: {"0.0", "0.0"}, 38: {"5e-324", "5e-324"}, 46: {"9e999", `{"$real":"Infinity"}`},
	54: {"7.0", "7.0"},
}

// Doubles of every magnitude written by the 3.40 CLI, whose printf is inexact at
// extreme exponents, arrive as JSON numbers that parse back to the same bits.
func TestRealsFromCLIAreExact(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE f(id INTEGER PRIMARY KEY, v);`)
	d := open(t, path, db.Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	var sql strings.Builder
	var want []float64
	sql.WriteString("BEGIN;")
	for i := range 2000 {
		var v float64
		switch i % 3 {
		case 0:
			v = math.Float64frombits(rng.Uint64()) // any bits: extremes, subnormals
		case 1:
			v = math.Float64frombits(rng.Uint64() & 0x000fffffffffffff) // subnormal
		default:
			v = (rng.Float64()*9 + 1) * math.Pow(10, float64(rng.IntN(616)-308))
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			v = math.MaxFloat64
		}
		want = append(want, v)
		fmt.Fprintf(&sql, "INSERT INTO f VALUES(%d, ieee754_from_blob(x'%016x'));\n", i+1, math.Float64bits(v))
	}
	// 3.40 reads this value's 15-digit rendering back as the value itself, though it
	// is one unit off: a round-trip check in the trigger let it through inexactly.
	// Whole numbers below 10^15 take SQLite's own rendering.
	for _, v := range []float64{4.2045684222591796e+84, 7, -123456789012345, 999999999999999, 1e15, 0.1, 1234567.5} {
		want = append(want, v)
		fmt.Fprintf(&sql, "INSERT INTO f VALUES(%d, ieee754_from_blob(x'%016x'));\n", len(want), math.Float64bits(v))
	}
	sql.WriteString("COMMIT;")
	testenv.SQLite(t, path, sql.String())
	got := readAll(t, d, 0)
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d", len(got), len(want))
	}
	for i, c := range got {
		var row struct{ V float64 }
		if err := json.Unmarshal(c.New, &row); err != nil {
			t.Fatalf("%s: %v", c.New, err)
		}
		if math.Float64bits(row.V) != math.Float64bits(want[i]) && !(row.V == 0 && want[i] == 0) {
			t.Errorf("stored %v (%016x), received %s", want[i], math.Float64bits(want[i]), c.New)
		}
	}
}

// A trigger sync that fails (the write lock held past the busy timeout) is retried,
// so a table created meanwhile still gets captured.
func TestTailerRetriesFailedSync(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	logs := &logLines{ch: make(chan string, 64)}
	d := open(t, path, db.Options{BusyTimeout: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))})

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
	tl := d.NewTailer(0, func(b []models.Encoded) { got <- b }, db.TailerOptions{})
	done := make(chan struct{})
	go func() { tl.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	runCapture(t, ctx, d)

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

// The triggers skip the type dispatch for columns that can only hold INTEGER, TEXT or
// NULL (the rowid alias; INT, INTEGER and TEXT columns of STRICT tables). This checks
// those shortcuts never apply where another storage class can appear: the DESC quirk
// (INTEGER PRIMARY KEY DESC is not a rowid alias and may hold text), STRICT REAL, BLOB
// and ANY columns, and a STRICT table too wide for one json_object call.
func TestPlainColumnShortcuts(t *testing.T) {
	var wide strings.Builder
	wide.WriteString("CREATE TABLE wide (id INTEGER PRIMARY KEY")
	for i := range 70 {
		fmt.Fprintf(&wide, ", c%d TEXT", i)
	}
	wide.WriteString(") STRICT;")
	path := testenv.NewDB(t, `
		CREATE TABLE s (id INTEGER PRIMARY KEY, i INT, t TEXT, r REAL, b BLOB, a ANY) STRICT;
		CREATE TABLE q (id INTEGER PRIMARY KEY DESC, v);
		CREATE TABLE g (id INTEGER PRIMARY KEY, a INTEGER, b TEXT AS (x'00'), r INTEGER AS (a / 2.0) STORED) STRICT;
		`+wide.String())
	d := open(t, path, db.Options{})
	testenv.SQLite(t, path, `
		INSERT INTO s VALUES (1, 42, 'x"y', 0.1, x'ab', 1.5), (2, NULL, NULL, NULL, NULL, x'00');
		INSERT INTO q VALUES ('text-key', 1), (7.5, 2);
		INSERT INTO wide (id, c0, c69) VALUES (9, 'first', NULL);
		INSERT INTO g (id, a) VALUES (1, 1);
		INSERT INTO s (id, t, a) VALUES (3, json('{"x":[1]}'), json('[2]'));
		INSERT INTO q VALUES (9, json('{"y":3}'));
		UPDATE wide SET c1 = json('[4]') WHERE id = 9;`)
	want := []struct{ pk, image string }{
		{`{"id":1}`, `{"id":1,"i":42,"t":"x\"y","r":0.1,"b":{"$blob":"AB"},"a":1.5}`},
		{`{"id":2}`, `{"id":2,"i":null,"t":null,"r":null,"b":null,"a":{"$blob":"00"}}`},
		{`{"id":"text-key"}`, `{"id":"text-key","v":1}`},
		{`{"id":7.5}`, `{"id":7.5,"v":2}`},
	}
	ch := readAll(t, d, 0)
	if len(ch) != len(want)+5 {
		t.Fatalf("got %d changes, want %d", len(ch), len(want)+5)
	}
	// Text written as json(…) is captured as the string the table holds, not as JSON:
	// STRICT TEXT, ANY, an ordinary column and a wide table's.
	for i, w := range []string{
		`{"id":3,"i":null,"t":"{\"x\":[1]}","r":null,"b":null,"a":"[2]"}`,
		`{"id":9,"v":"{\"y\":3}"}`,
	} {
		if got := string(ch[6+i].New); got != w {
			t.Errorf("json() text: new %s, want %s", got, w)
		}
	}
	var wideRow map[string]any
	if err := json.Unmarshal(ch[8].New, &wideRow); err != nil || wideRow["c1"] != "[4]" {
		t.Errorf("json() text in a wide table: new %s", ch[8].New)
	}
	// Generated columns are not type-checked, even in STRICT tables.
	if g := string(ch[5].New); g != `{"id":1,"a":1,"b":{"$blob":"00"},"r":0.5}` {
		t.Errorf("generated columns: new %s", g)
	}
	for i, w := range want {
		if string(ch[i].PK) != w.pk || string(ch[i].New) != w.image {
			t.Errorf("change %d: pk %s new %s, want pk %s new %s", i+1, ch[i].PK, ch[i].New, w.pk, w.image)
		}
	}
	// The shortcut is taken where it may be, and only there.
	trig := testenv.SQLite(t, path, `SELECT sql FROM sqlite_master WHERE name = 'sqlws_insert_s'`)
	for col, dispatched := range map[string]bool{"id": false, "i": false, "t": false, "r": true, "b": true, "a": true} {
		if got := strings.Contains(trig, `typeof(NEW."`+col+`")`); got != dispatched {
			t.Errorf("insert trigger of s: type dispatch on %s = %v, want %v", col, got, dispatched)
		}
	}
	var row map[string]any
	if err := json.Unmarshal(ch[4].New, &row); err != nil {
		t.Fatalf("wide row image %s: %v", ch[4].New, err)
	}
	if row["id"] != 9.0 || row["c0"] != "first" || row["c69"] != nil || len(row) != 71 {
		t.Errorf("wide row image = %s", ch[4].New)
	}
}

// runCapture runs d's schema watcher and trigger syncer, as sqlws serve does, until
// ctx is done; the test waits for them to stop.
func runCapture(t *testing.T, ctx context.Context, d *db.DB) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() { d.Schema().Run(ctx) })
	wg.Go(func() { d.Syncer().Run(ctx) })
	t.Cleanup(wg.Wait)
}

// REST's view of the tables does not depend on the tailer: without one, the schema
// watcher notices a new table within its poll, and the syncer captures it.
func TestSchemaFollowsWithoutTailer(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	d := open(t, path, db.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runCapture(t, ctx, d)
	testenv.SQLite(t, path, `CREATE TABLE b(id INTEGER PRIMARY KEY);`)
	testenv.WaitFor(t, 10*time.Second, "the schema to show the new table", func() bool { return d.Tracked("b") })
	testenv.WaitTriggers(t, path, "b")
}

// With the tailer running, a table created by another program gets its triggers
// within milliseconds of the commit: the tailer sees schema_version move and pokes
// the schema watcher, which wakes the syncer; none of them waits for a poll.
func TestNewTableCapturedPromptly(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	d := open(t, path, db.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tl := d.NewTailer(0, func([]models.Encoded) {}, db.TailerOptions{})
	done := make(chan struct{})
	go func() { tl.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	runCapture(t, ctx, d)

	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	time.Sleep(300 * time.Millisecond) // past the tailer's start-up re-polls
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
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: no triggers 10s after it was created", table)
			}
			time.Sleep(time.Millisecond)
		}
		worst = max(worst, time.Since(start))
	}
	// Milliseconds when the machine is quiet; the bound only has to tell the poke
	// from the schema watcher's one-second poll, on a busy machine under -race.
	if worst >= capture.PollInterval/2 {
		t.Fatalf("a new table took %v to get its triggers; the tailer's poke should make it milliseconds", worst)
	}
	t.Logf("slowest of 3 new tables captured in %v", worst)
}
