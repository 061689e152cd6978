package capture_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
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

func TestSyncTriggersIdempotentAndRegenerates(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY, x TEXT); CREATE TABLE b(k TEXT, v BLOB);`)
	d := open(t, path, testdb.Options{})
	ctx := context.Background()

	res, err := d.Syncer.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 0 || res.Dropped != 0 {
		t.Fatalf("second sync changed triggers: %+v", res)
	}
	if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM sqlite_master WHERE type='trigger' AND name LIKE 'sqlws%' AND tbl_name NOT LIKE 'sqlws%';"); n != 6 {
		t.Fatalf("triggers = %d, want 6", n)
	}

	testenv.SQLite(t, path, `ALTER TABLE a ADD COLUMN y INTEGER DEFAULT 7;`)
	res, err = d.Syncer.Sync(ctx)
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
	if _, err := d.Syncer.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if d.Schema.Tracked("b") || !d.Schema.Tracked("a") {
		t.Fatalf("tracked after DROP TABLE b: a=%v b=%v", d.Schema.Tracked("a"), d.Schema.Tracked("b"))
	}
}

func TestStorageClassesRoundTripFromCLI(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE v(id INTEGER PRIMARY KEY, x);`)
	d := open(t, path, testdb.Options{})
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
	d := open(t, path, testdb.Options{})
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
			d, err := testdb.OpenErr(path, testdb.Options{})
			if err != nil {
				errs <- err
				return
			}
			defer d.Close()
			if err := d.Store.Migrate(ctx); err != nil {
				errs <- err
				return
			}
			if _, err := d.Syncer.Sync(ctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := testenv.SQLiteInt(t, path, "SELECT count(*) FROM sqlite_master WHERE type='trigger' AND tbl_name NOT LIKE 'sqlws%';"); n != 6 {
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

func TestTablesFlagRejectsUnknown(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	d, err := testdb.OpenErr(path, testdb.Options{Tables: []string{"a", "nope"}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Store.Migrate(context.Background())
	res, err := d.Syncer.Sync(context.Background())
	if err != nil || len(res.Missing) != 1 || res.Missing[0] != "nope" || !d.Schema.Tracked("a") {
		t.Fatalf("res = %+v, err = %v; want nope missing and a tracked", res, err)
	}
}

// REPLACE removes conflicting rows without firing DELETE triggers; sqlws reports them
// as deletes anyway, and reports nothing extra for IGNORE or upserts.
func TestReplaceConflictDeletesAreCaptured(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE, n INT, a TEXT, b TEXT, j TEXT, UNIQUE(a, b));
		CREATE UNIQUE INDEX uj ON u(j COLLATE NOCASE);`)
	d := open(t, path, testdb.Options{})
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
	d := open(t, path, testdb.Options{})
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
	d := open(t, path, testdb.Options{})
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
	d := open(t, path, testdb.Options{})
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
	d := open(t, path, testdb.Options{})
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
	// s is captured in the native layout (capture/native.go): values copied as they
	// are, no type tests at all, and the images above are the JSON layout's byte for
	// byte.
	trig := testenv.SQLite(t, path, `SELECT sql FROM sqlite_master WHERE name = 'sqlws_insert_s'`)
	if strings.Contains(trig, "typeof(") || !strings.Contains(trig, "sid, v0") {
		t.Errorf("insert trigger of s is not in the native layout: %s", trig)
	}
	var row map[string]any
	if err := json.Unmarshal(ch[4].New, &row); err != nil {
		t.Fatalf("wide row image %s: %v", ch[4].New, err)
	}
	if row["id"] != 9.0 || row["c0"] != "first" || row["c69"] != nil || len(row) != 71 {
		t.Errorf("wide row image = %s", ch[4].New)
	}
}
