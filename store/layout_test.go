package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
)

// lastChange inserts a row into a through the sqlite3 shell and returns the change it
// made, checking that it is the newest in the changelog.
func lastChange(t *testing.T, d *testdb.DB, path string, id int) models.Change {
	t.Helper()
	testenv.SQLite(t, path, fmt.Sprintf("INSERT INTO a(id, v) VALUES (%d, 'x');", id))
	head := int64(testenv.SQLiteInt(t, path, "SELECT max(seq) FROM sqlws_changes;"))
	all := d.ReadAll(t, head-1)
	if len(all) != 1 || all[0].Seq != head || string(all[0].PK) != fmt.Sprintf(`{"id":%d}`, id) {
		t.Fatalf("after inserting %d: changes from %d are %+v", id, head-1, all)
	}
	return all[0]
}

// The changelog's seq has no AUTOINCREMENT counter (migration 00004); nothing an
// operator or sqlws does to the file may make a seq come round again.
func TestSeqNeverReused(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, v);`)
	d := open(t, path, testdb.Options{})
	for i := 1; i <= 3; i++ {
		lastChange(t, d, path, i)
	}
	next := func(id int, after string, want int64) {
		t.Helper()
		if c := lastChange(t, d, path, id); c.Seq != want {
			t.Fatalf("after %s: seq %d, want %d", after, c.Seq, want)
		}
	}

	// A DELETE of the whole changelog in the shell keeps the newest row.
	testenv.SQLite(t, path, "DELETE FROM sqlws_changes;")
	if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM sqlws_changes;"); n != 1 {
		t.Fatalf("DELETE FROM sqlws_changes left %d rows, want the newest only", n)
	}
	next(4, "deleting the changelog", 4)

	testenv.SQLite(t, path, "VACUUM;")
	next(5, "VACUUM", 5)

	// Retention that would take everything.
	testenv.SQLite(t, path, "UPDATE sqlws_changes SET ts = 0;")
	if _, err := d.Log.Prune(context.Background(), changelog.Retention{MaxAge: time.Hour}, 1<<62); err != nil {
		t.Fatal(err)
	}
	next(6, "pruning everything", 6)

	stream := d.Store.StreamID()
	d.Close()
	d = open(t, path, testdb.Options{})
	next(7, "reopening", 7)
	if d.Store.StreamID() != stream {
		t.Fatalf("stream id changed on reopen: %q then %q", stream, d.Store.StreamID())
	}

	// Uninstalling forgets the history; numbering starts again, in a new stream, so
	// that every client is reset rather than served another history under old seqs.
	if err := d.Store.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d = open(t, path, testdb.Options{})
	if d.Store.StreamID() == stream {
		t.Fatalf("reinstalling kept the stream id %q", stream)
	}
	next(8, "reinstalling", 1)
}

// A database whose changelog was written in the JSON layout (migrations up to 00003)
// keeps its history across the migration to the native layout, byte for byte, and
// its next seq follows the last one handed out, even one whose row is gone.
func TestMigrateFromJSONLayout(t *testing.T) {
	ctx := context.Background()
	// Tables wider than the native layout keep writing JSON rows: they make the
	// history that survives a migration down and up again.
	var cols []string
	for i := range 40 {
		cols = append(cols, fmt.Sprintf("c%d", i))
	}
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, v);
		CREATE TABLE wide(id INTEGER PRIMARY KEY, `+strings.Join(cols, ", ")+`);`)
	d := open(t, path, testdb.Options{})
	lastChange(t, d, path, 1) // native, seq 1
	testenv.SQLite(t, path, `INSERT INTO wide(id, c0, c39) VALUES (1, 'é"\', 1.5);
		UPDATE wide SET c1 = x'00ff', c0 = NULL WHERE id = 1;
		INSERT INTO wide(id, c2) VALUES (2, 9007199254740993);
		DELETE FROM wide WHERE id = 1;`) // JSON, seqs 2–5
	lastChange(t, d, path, 2) // native, seq 6
	before := d.ReadAll(t, 1)[:4]
	if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM sqlws_changes WHERE sid IS NULL;"); n != 4 {
		t.Fatalf("%d JSON-layout rows, want the 4 changes of wide", n)
	}

	// Down to the JSON layout: the native rows go, the counter stays at 6.
	if err := d.Store.MigrateDown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM sqlws_changes;"); n != 4 {
		t.Fatalf("%d rows after migrating down, want the 4 JSON ones", n)
	}
	if n := testenv.SQLiteInt(t, path, "SELECT seq FROM sqlite_sequence WHERE name = 'sqlws_changes';"); n != 6 {
		t.Fatalf("AUTOINCREMENT counter %d after migrating down, want 6", n)
	}
	d.Close()

	// Up again, as a new sqlws version meets an old file.
	d = open(t, path, testdb.Options{})
	pos, err := d.Log.Position(ctx)
	if err != nil || pos.Oldest != 2 || pos.Head != 6 {
		t.Fatalf("position after migrating up: %+v, %v; want oldest 2, head 6 (a mark)", pos, err)
	}
	after := d.ReadAll(t, 1)
	if len(after) != 4 {
		t.Fatalf("history after migrating up: %+v", after)
	}
	for i := range before {
		b, _ := json.Marshal(before[i])
		a, _ := json.Marshal(after[i])
		if string(a) != string(b) {
			t.Fatalf("change %d changed in the migration:\n%s\n%s", before[i].Seq, b, a)
		}
	}
	if c := lastChange(t, d, path, 3); c.Seq != 7 {
		t.Fatalf("first change after migrating up has seq %d, want 7", c.Seq)
	}

	// An emptied JSON changelog: only the counter remembers the head.
	if err := d.Store.MigrateDown(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.SQLite(t, path, "DELETE FROM sqlws_changes;")
	d.Close()
	d = open(t, path, testdb.Options{})
	if pos, err := d.Log.Position(ctx); err != nil || pos.Head != 7 {
		t.Fatalf("position after migrating an empty changelog up: %+v, %v; want head 7", pos, err)
	}
	if c := lastChange(t, d, path, 4); c.Seq != 8 {
		t.Fatalf("first change after migrating an empty changelog up has seq %d, want 8", c.Seq)
	}
}
