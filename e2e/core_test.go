package e2e

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

// TestCoreInsertUpdateDelete: CLI writes arrive with the right op, pk, old and new,
// in seq order starting at 1, with a plausible ts.
func TestCoreInsertUpdateDelete(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER);`)
	c := srv.Dial(t)
	if c.Hello.Type != protocol.TypeHello || c.Hello.Version != 1 || c.Hello.Stream == "" ||
		c.Hello.Head != 0 || c.Hello.Oldest != 1 {
		t.Fatalf("hello on a fresh database = %+v, want version 1, a stream, head 0, oldest 1", c.Hello)
	}
	sub := c.Subscribe("a", nil, nil, "")
	if sub.Head != 0 {
		t.Errorf("subscribed.head = %d, want 0", sub.Head)
	}

	before := time.Now().UnixMilli()
	testenv.SQLite(t, db, `
INSERT INTO todos(id, title, done) VALUES(1, 'milk', 0);
UPDATE todos SET done = 1 WHERE id = 1;
DELETE FROM todos WHERE id = 1;
INSERT INTO todos(id, title, done) VALUES(2, 'eggs', 0), (3, 'tea', 0), (4, 'jam', 1);
UPDATE todos SET done = done + 10;
BEGIN; DELETE FROM todos WHERE id >= 3; COMMIT;
BEGIN; INSERT INTO todos VALUES(9, 'rolled back', 0); ROLLBACK;
INSERT INTO todos VALUES(5, 'after rollback', 0);
`)
	after := time.Now().UnixMilli()
	got := c.WaitChanges("a", 11, timeout)
	testenv.AssertContiguous(t, got, 1)
	row := func(id int, title string, done int) string {
		return fmt.Sprintf(`{"id":%d,"title":%q,"done":%d}`, id, title, done)
	}
	checkChange(t, got[0], "todos", "insert", `{"id":1}`, "null", row(1, "milk", 0))
	checkChange(t, got[1], "todos", "update", `{"id":1}`, row(1, "milk", 0), row(1, "milk", 1))
	checkChange(t, got[2], "todos", "delete", `{"id":1}`, row(1, "milk", 1), "null")
	checkChange(t, got[3], "todos", "insert", `{"id":2}`, "null", row(2, "eggs", 0))
	checkChange(t, got[4], "todos", "insert", `{"id":3}`, "null", row(3, "tea", 0))
	checkChange(t, got[5], "todos", "insert", `{"id":4}`, "null", row(4, "jam", 1))
	checkChange(t, got[6], "todos", "update", `{"id":2}`, row(2, "eggs", 0), row(2, "eggs", 10))
	checkChange(t, got[7], "todos", "update", `{"id":3}`, row(3, "tea", 0), row(3, "tea", 10))
	checkChange(t, got[8], "todos", "update", `{"id":4}`, row(4, "jam", 1), row(4, "jam", 11))
	checkChange(t, got[9], "todos", "delete", `{"id":3}`, row(3, "tea", 10), "null")
	checkChange(t, got[10], "todos", "delete", `{"id":4}`, row(4, "jam", 11), "null")
	for _, ch := range got {
		if ch.TS < before-2000 || ch.TS > after+2000 {
			t.Errorf("seq %d: ts = %d, want a unix-ms time in [%d, %d]", ch.Seq, ch.TS, before, after)
		}
	}
	// The rolled-back insert consumed no seq: the next change is 12.
	next := c.WaitChanges("a", 1, timeout)[0]
	if next.Seq != 12 {
		t.Errorf("change after a rolled-back transaction has seq %d, want 12", next.Seq)
	}
	checkChange(t, next, "todos", "insert", `{"id":5}`, "null", row(5, "after rollback", 0))
	expectMarker(t, c, "a", db, "todos", "done", 13)
}

// TestCoreStorageClasses: every SQLite storage class round-trips without loss.
func TestCoreStorageClasses(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `
CREATE TABLE vals(id INTEGER PRIMARY KEY, v);
CREATE TABLE reals(id INTEGER PRIMARY KEY, r REAL);`)
	c := srv.Dial(t)
	c.Subscribe("a", nil, nil, "")

	var allBytes strings.Builder
	for i := range 256 {
		fmt.Fprintf(&allBytes, "%02X", i)
	}
	text := "héllo wörld 🎉🚀 \"double\" 'single' back\\slash\nline2\r\ttab\x01ctl 日本語 \u2028 </script>"
	big := strings.Repeat("0123456789", 10000)
	sqlText := "'héllo wörld 🎉🚀 \"double\" ''single'' back\\slash' || char(10) || 'line2' || char(13) || char(9) || 'tab' || char(1) || 'ctl 日本語 \u2028 </script>'"

	type tc struct {
		name  string
		sql   string                           // SQL expression stored in vals.v
		check func(raw json.RawMessage) string // "" if ok, else a complaint
	}
	exact := func(want string) func(json.RawMessage) string {
		return func(raw json.RawMessage) string {
			if string(raw) != want {
				return "raw JSON " + string(raw) + ", want exactly " + want
			}
			return ""
		}
	}
	real := func(want float64) func(json.RawMessage) string {
		return func(raw json.RawMessage) string {
			if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
				return "raw JSON " + string(raw) + ", want a JSON number"
			}
			f, err := strconv.ParseFloat(string(raw), 64)
			if err != nil || f != want {
				return fmt.Sprintf("raw JSON %s parses to %v (%v), want %v", raw, f, err, want)
			}
			return ""
		}
	}
	str := func(want string) func(json.RawMessage) string {
		return func(raw json.RawMessage) string {
			var s string
			if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
				return "raw JSON " + string(raw) + ", want a JSON string"
			}
			if s != want {
				return fmt.Sprintf("string %q, want %q", s, want)
			}
			return ""
		}
	}
	cases := []tc{
		{"int64 max", "9223372036854775807", exact("9223372036854775807")},
		{"int64 min", "-9223372036854775807-1", exact("-9223372036854775808")},
		{"int zero", "0", exact("0")},
		{"int 2^53+1", "9007199254740993", exact("9007199254740993")},
		{"int negative", "-42", exact("-42")},
		{"real 0.1+0.2", "0.1+0.2", real(0.30000000000000004)},
		{"real 1e300", "1e300", real(1e300)},
		{"real 1/3", "1.0/3", real(1.0 / 3)},
		{"real -2.5e-7", "-0.00000025", real(-0.00000025)},
		{"real +Inf", "9e999", exact(`{"$real":"Infinity"}`)},
		{"real -Inf", "-9e999", exact(`{"$real":"-Infinity"}`)},
		{"text unicode", sqlText, str(text)},
		{"text empty", "''", str("")},
		{"text digits", "'123'", str("123")},
		{"text looks like blob", `'{"$blob":"00"}'`, str(`{"$blob":"00"}`)},
		{"text 100k", testenv.QuoteLiteral(big), str(big)},
		{"null", "NULL", exact("null")},
		{"blob with zero bytes", "X'00FF10ab00'", exact(`{"$blob":"00FF10AB00"}`)},
		{"blob all bytes", "X'" + allBytes.String() + "'", exact(`{"$blob":"` + allBytes.String() + `"}`)},
		{"blob empty", "X''", exact(`{"$blob":""}`)},
		{"zeroblob", "zeroblob(4)", exact(`{"$blob":"00000000"}`)},
	}
	var sql strings.Builder
	for i, k := range cases {
		fmt.Fprintf(&sql, "INSERT INTO vals(id, v) VALUES(%d, %s);\n", i+1, k.sql)
	}
	// Integral REALs, in a REAL column and an untyped one.
	sql.WriteString("INSERT INTO reals(id, r) VALUES(1, 3);\nINSERT INTO reals(id, r) VALUES(2, 2.0);\n")
	testenv.SQLite(t, db, sql.String())

	// The CLI agrees the values were stored with the intended classes.
	types := strings.Fields(testenv.SQLite(t, db, "SELECT typeof(v) FROM vals ORDER BY id;"))
	if len(types) != len(cases) {
		t.Fatalf("typeof rows: %v", types)
	}

	got := c.WaitChanges("a", len(cases)+2, timeout)
	testenv.AssertContiguous(t, got, 1)
	for i, k := range cases {
		ch := got[i]
		if ch.Table != "vals" || ch.Op != "insert" {
			t.Fatalf("change %d: %s %s, want vals insert", i, ch.Table, ch.Op)
		}
		jsonEq(t, k.name+" pk", ch.PK, fmt.Sprintf(`{"id":%d}`, i+1))
		if !isNull(ch.Old) {
			t.Errorf("%s: old = %s, want null", k.name, ch.Old)
		}
		row := obj(t, ch.New)
		if string(row["id"]) != strconv.Itoa(i+1) {
			t.Errorf("%s: new.id = %s, want %d", k.name, row["id"], i+1)
		}
		if msg := k.check(row["v"]); msg != "" {
			t.Errorf("%s (stored as %s): %s", k.name, types[i], msg)
		}
	}
	// A REAL must stay distinguishable from an INTEGER ("values keep SQLite's storage
	// class without loss"): an integral REAL is a JSON number with a fraction or
	// exponent, parsing back to the same float64.
	for i, want := range []float64{3, 2} {
		ch := got[len(cases)+i]
		raw := string(obj(t, ch.New)["r"])
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil || f != want || !strings.ContainsAny(raw, ".eE") {
			t.Errorf("REAL %v in a REAL column encoded as %s: want a JSON number with a fraction or exponent (e.g. %.1f) so the storage class survives", want, raw, want)
		}
	}
}

// TestCoreOddIdentifiers: table and column names with spaces, quotes, keywords and
// non-ASCII characters are captured and reported exactly as declared.
func TestCoreOddIdentifiers(t *testing.T) {
	t.Parallel()
	const weird = `we "ird" it's ✓ tbl`
	db, srv := start(t, `
CREATE TABLE "select"("order" INTEGER PRIMARY KEY, "from" TEXT, "group" INT);
CREATE TABLE "we ""ird"" it's ✓ tbl"("col one" TEXT, "q""uote" INT, "it's" TEXT, "ünï😀" TEXT, "select" INT);
CREATE TABLE "order"("a b" TEXT, "c""d" INT, "v" TEXT, PRIMARY KEY("a b", "c""d"));
`)
	c := srv.Dial(t)
	c.Subscribe("all", nil, nil, "")
	c.Subscribe("weird", []string{weird}, nil, "")
	c.Subscribe("kw", []string{"select", "order"}, nil, "")

	testenv.SQLite(t, db, `
INSERT INTO "select"("order", "from", "group") VALUES(1, 'a', 2);
INSERT INTO "we ""ird"" it's ✓ tbl" VALUES('x y', 7, 'o''k', 'ü', 3);
INSERT INTO "order" VALUES('k 1', 5, 'v1');
UPDATE "select" SET "from" = 'b' WHERE "order" = 1;
UPDATE "we ""ird"" it's ✓ tbl" SET "q""uote" = 8;
UPDATE "order" SET "v" = 'v2';
DELETE FROM "select";
DELETE FROM "we ""ird"" it's ✓ tbl";
DELETE FROM "order";
`)
	got := c.WaitChanges("all", 9, timeout)
	testenv.AssertContiguous(t, got, 1)
	sel1 := `{"order":1,"from":"a","group":2}`
	sel2 := `{"order":1,"from":"b","group":2}`
	w1 := `{"rowid":1,"col one":"x y","q\"uote":7,"it's":"o'k","ünï😀":"ü","select":3}`
	w2 := `{"rowid":1,"col one":"x y","q\"uote":8,"it's":"o'k","ünï😀":"ü","select":3}`
	o1 := `{"a b":"k 1","c\"d":5,"v":"v1"}`
	o2 := `{"a b":"k 1","c\"d":5,"v":"v2"}`
	checkChange(t, got[0], "select", "insert", `{"order":1}`, "null", sel1)
	checkChange(t, got[1], weird, "insert", `{"rowid":1}`, "null", w1)
	checkChange(t, got[2], "order", "insert", `{"a b":"k 1","c\"d":5}`, "null", o1)
	checkChange(t, got[3], "select", "update", `{"order":1}`, sel1, sel2)
	checkChange(t, got[4], weird, "update", `{"rowid":1}`, w1, w2)
	checkChange(t, got[5], "order", "update", `{"a b":"k 1","c\"d":5}`, o1, o2)
	checkChange(t, got[6], "select", "delete", `{"order":1}`, sel2, "null")
	checkChange(t, got[7], weird, "delete", `{"rowid":1}`, w2, "null")
	checkChange(t, got[8], "order", "delete", `{"a b":"k 1","c\"d":5}`, o2, "null")

	if w := c.WaitChanges("weird", 3, timeout); !slices.Equal(seqs(w), []int64{2, 5, 8}) {
		t.Errorf("subscription to %q got seqs %v, want [2 5 8]", weird, seqs(w))
	}
	if k := c.WaitChanges("kw", 6, timeout); !slices.Equal(seqs(k), []int64{1, 3, 4, 6, 7, 9}) {
		t.Errorf("subscription to select+order got seqs %v, want [1 3 4 6 7 9]", seqs(k))
	}
}

// TestCoreKeys: pk is the declared PRIMARY KEY (composite, WITHOUT ROWID, INTEGER
// PRIMARY KEY, TEXT key) or {"rowid":n} for tables without one.
func TestCoreKeys(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `
CREATE TABLE comp(a TEXT, b INTEGER, v TEXT, PRIMARY KEY(b, a));
CREATE TABLE wr(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE TABLE wr2(x INT, y TEXT, v, PRIMARY KEY(x, y)) WITHOUT ROWID;
CREATE TABLE plain(v TEXT, w INT);
CREATE TABLE ipk(id INTEGER PRIMARY KEY, v TEXT);
CREATE TABLE tpk(code TEXT PRIMARY KEY, v TEXT);
CREATE TABLE st(id INTEGER PRIMARY KEY, n INT, r REAL, t TEXT, b BLOB, a ANY) STRICT;
`)
	c := srv.Dial(t)
	c.Subscribe("a", nil, nil, "")
	testenv.SQLite(t, db, `
INSERT INTO comp VALUES('x', 1, 'v1');
UPDATE comp SET v = 'v2' WHERE a = 'x' AND b = 1;
DELETE FROM comp;
INSERT INTO wr VALUES('k1', 1);
UPDATE wr SET v = 2;
DELETE FROM wr;
INSERT INTO wr2 VALUES(3, 'y', NULL);
UPDATE wr2 SET v = X'01';
DELETE FROM wr2;
INSERT INTO plain VALUES('p1', 1);
INSERT INTO plain VALUES('p2', 2);
INSERT INTO plain(rowid, v, w) VALUES(100, 'p100', 100);
UPDATE plain SET w = 20 WHERE v = 'p2';
DELETE FROM plain WHERE v = 'p1';
INSERT INTO ipk VALUES(5, 'a');
UPDATE ipk SET v = 'b' WHERE id = 5;
DELETE FROM ipk;
INSERT INTO tpk VALUES('c1', 'a');
UPDATE tpk SET v = 'b';
DELETE FROM tpk;
INSERT INTO st VALUES(1, 2, 3.5, 't', X'BEEF', 4);
`)
	got := c.WaitChanges("a", 21, timeout)
	testenv.AssertContiguous(t, got, 1)
	i := 0
	ck := func(table, op, pk, old, new string) {
		t.Helper()
		checkChange(t, got[i], table, op, pk, old, new)
		i++
	}
	ck("comp", "insert", `{"a":"x","b":1}`, "null", `{"a":"x","b":1,"v":"v1"}`)
	ck("comp", "update", `{"a":"x","b":1}`, `{"a":"x","b":1,"v":"v1"}`, `{"a":"x","b":1,"v":"v2"}`)
	ck("comp", "delete", `{"a":"x","b":1}`, `{"a":"x","b":1,"v":"v2"}`, "null")
	ck("wr", "insert", `{"k":"k1"}`, "null", `{"k":"k1","v":1}`)
	ck("wr", "update", `{"k":"k1"}`, `{"k":"k1","v":1}`, `{"k":"k1","v":2}`)
	ck("wr", "delete", `{"k":"k1"}`, `{"k":"k1","v":2}`, "null")
	ck("wr2", "insert", `{"x":3,"y":"y"}`, "null", `{"x":3,"y":"y","v":null}`)
	ck("wr2", "update", `{"x":3,"y":"y"}`, `{"x":3,"y":"y","v":null}`, `{"x":3,"y":"y","v":{"$blob":"01"}}`)
	ck("wr2", "delete", `{"x":3,"y":"y"}`, `{"x":3,"y":"y","v":{"$blob":"01"}}`, "null")
	// Rowid tables: the row image holds the declared columns; a "rowid" member in it
	// is tolerated, so compare only the declared columns.
	for _, want := range []struct {
		op, pk   string
		old, new map[string]string
	}{
		{"insert", `{"rowid":1}`, nil, map[string]string{"v": `"p1"`, "w": "1"}},
		{"insert", `{"rowid":2}`, nil, map[string]string{"v": `"p2"`, "w": "2"}},
		{"insert", `{"rowid":100}`, nil, map[string]string{"v": `"p100"`, "w": "100"}},
		{"update", `{"rowid":2}`, map[string]string{"v": `"p2"`, "w": "2"}, map[string]string{"v": `"p2"`, "w": "20"}},
		{"delete", `{"rowid":1}`, map[string]string{"v": `"p1"`, "w": "1"}, nil},
	} {
		ch := got[i]
		i++
		if ch.Table != "plain" || ch.Op != want.op {
			t.Errorf("seq %d: %s %s, want plain %s", ch.Seq, ch.Table, ch.Op, want.op)
		}
		jsonEq(t, fmt.Sprintf("seq %d plain pk", ch.Seq), ch.PK, want.pk)
		for _, img := range []struct {
			name string
			raw  json.RawMessage
			want map[string]string
		}{{"old", ch.Old, want.old}, {"new", ch.New, want.new}} {
			if img.want == nil {
				if !isNull(img.raw) {
					t.Errorf("seq %d: %s = %s, want null", ch.Seq, img.name, img.raw)
				}
				continue
			}
			row := obj(t, img.raw)
			for col, v := range img.want {
				if string(row[col]) != v {
					t.Errorf("seq %d: %s.%s = %s, want %s (image %s)", ch.Seq, img.name, col, row[col], v, img.raw)
				}
			}
			for col := range row {
				if col != "v" && col != "w" && col != "rowid" {
					t.Errorf("seq %d: %s has unexpected column %q", ch.Seq, img.name, col)
				}
			}
		}
	}
	ck("ipk", "insert", `{"id":5}`, "null", `{"id":5,"v":"a"}`)
	ck("ipk", "update", `{"id":5}`, `{"id":5,"v":"a"}`, `{"id":5,"v":"b"}`)
	ck("ipk", "delete", `{"id":5}`, `{"id":5,"v":"b"}`, "null")
	ck("tpk", "insert", `{"code":"c1"}`, "null", `{"code":"c1","v":"a"}`)
	ck("tpk", "update", `{"code":"c1"}`, `{"code":"c1","v":"a"}`, `{"code":"c1","v":"b"}`)
	ck("tpk", "delete", `{"code":"c1"}`, `{"code":"c1","v":"b"}`, "null")
	st := got[i]
	jsonEq(t, "st pk", st.PK, `{"id":1}`)
	row := obj(t, st.New)
	if f, err := strconv.ParseFloat(string(row["r"]), 64); err != nil || f != 3.5 {
		t.Errorf("STRICT REAL = %s, want 3.5", row["r"])
	}
	for col, want := range map[string]string{"id": "1", "n": "2", "t": `"t"`, "b": `{"$blob":"BEEF"}`, "a": "4"} {
		if string(row[col]) != want {
			t.Errorf("STRICT table: new.%s = %s, want %s", col, row[col], want)
		}
	}
}

// TestCoreRealRoundTrip: every finite float64 stored as REAL — inserted bit-exactly
// with the CLI's ieee754_from_blob, and through the Go driver — arrives as a JSON
// number that a correct parser (strconv.ParseFloat) turns back into the same bits.
func TestCoreRealRoundTrip(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE f(id INTEGER PRIMARY KEY, v);`)
	c := srv.Dial(t)
	c.Subscribe("a", nil, nil, "")

	values := []float64{
		0.30000000000000004, 1e300, -1e-300, math.MaxFloat64, -math.MaxFloat64,
		math.SmallestNonzeroFloat64, 2.2250738585072014e-308, 1, -1, 0.5, 123456789.125,
		math.Copysign(0, -1), 9007199254740993, 1e22, 1e23, 5e-324,
		// Values that SQLite 3.40's printf does not round-trip.
		math.Float64frombits(0x7F477ED3F3FF3628), math.Float64frombits(0xFEDEDBC1203E9D1D),
		math.Float64frombits(0x6ABFF243476CA6AC), math.Float64frombits(0x01294A9B263B9019),
		math.Float64frombits(0x7F8E47B0D61C2AC0),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for len(values) < 500 {
		f := math.Float64frombits(r.Uint64())
		if len(values)%2 == 0 {
			f = r.NormFloat64() * math.Pow(10, float64(r.IntN(40)-20))
		}
		if !math.IsNaN(f) && !math.IsInf(f, 0) {
			values = append(values, f)
		}
	}
	check := func(path string, got []models.Change, base int) {
		t.Helper()
		bad := 0
		for i, ch := range got {
			want := values[i]
			raw := string(field(t, ch, "v"))
			g, err := strconv.ParseFloat(raw, 64)
			// -0 arriving as 0 is tolerated: they are the same float64 by ==.
			same := math.Float64bits(g) == math.Float64bits(want) || (want == 0 && g == 0)
			if intField(t, ch, "id") != int64(base+i) || err != nil || !same {
				if bad++; bad <= 5 {
					t.Errorf("%s: REAL %v (bits %016X) arrived as %s, which parses to %v (bits %016X, %v)",
						path, want, math.Float64bits(want), raw, g, math.Float64bits(g), err)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d REAL values did not round-trip", path, bad, len(got))
		}
	}

	// The CLI (SQLite 3.40), bit-exact input.
	var b strings.Builder
	b.WriteString("BEGIN;\n")
	for i, f := range values {
		fmt.Fprintf(&b, "INSERT INTO f(id, v) VALUES(%d, ieee754_from_blob(X'%016X'));\n", i+1, math.Float64bits(f))
	}
	b.WriteString("COMMIT;\n")
	testenv.SQLite(t, db, b.String())
	stored := strings.Fields(testenv.SQLite(t, db, "SELECT hex(ieee754_to_blob(v)) FROM f ORDER BY id;"))
	for i, f := range values {
		if want := fmt.Sprintf("%016X", math.Float64bits(f)); i >= len(stored) || stored[i] != want {
			t.Fatalf("CLI stored value %d as %v, want %s", i, stored[i:min(i+1, len(stored))], want)
		}
	}
	check("written by the sqlite3 CLI", c.WaitChanges("a", len(values), timeout), 1)

	// The Go driver (another SQLite version), bound parameters.
	conn, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tx, err := conn.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range values {
		if _, err := tx.Exec("INSERT INTO f(id, v) VALUES(?, ?)", 10001+i, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	check("written by the Go driver", c.WaitChanges("a", len(values), timeout), 10001)
}

// TestCoreReplicaConsistency: applying the change records, in seq order, to a replica
// keyed by primary key reproduces the table exactly — including writes whose
// conflict resolution deletes rows (REPLACE, INSERT OR REPLACE, UPDATE OR REPLACE),
// upserts and primary-key changes. ("Every row change in a tracked table becomes one
// change record"; records carry full row images.)
func TestCoreReplicaConsistency(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE, n INT);`)
	c := srv.Dial(t)
	c.Subscribe("a", nil, testenv.Int64(0), "")
	testenv.SQLite(t, db, `
INSERT INTO u VALUES(1, 'a', 0), (2, 'b', 0), (3, 'c', 0), (4, 'd', 0);
REPLACE INTO u VALUES(1, 'a', 1);
INSERT INTO u VALUES(1, 'z', 0) ON CONFLICT(id) DO UPDATE SET n = n + 1;
UPDATE u SET id = 10 WHERE id = 3;
INSERT INTO u VALUES(10, 'c2', 5) ON CONFLICT(id) DO UPDATE SET email = excluded.email;
INSERT OR IGNORE INTO u VALUES(2, 'zz', 9);
`)
	rep := map[int64]string{}
	replicaCheck(t, c, db, "plain writes", rep)

	// Conflict resolution that deletes other rows.
	testenv.SQLite(t, db, `
REPLACE INTO u VALUES(5, 'b', 0);
INSERT OR REPLACE INTO u VALUES(4, 'c2', 0);
UPDATE OR REPLACE u SET email = 'a' WHERE id = 5;
`)
	replicaCheck(t, c, db, "REPLACE conflict resolution", rep)
}

// replicaCheck applies every change record received so far (up to a marker row it
// writes) to the replica rep (rows keyed by id), and compares it with table u.
func replicaCheck(t *testing.T, c *testenv.Client, db, what string, rep map[int64]string) {
	t.Helper()
	testenv.SQLite(t, db, "INSERT INTO u VALUES(1000, 'marker "+what+"', 0);")
	for {
		ch := c.WaitChanges("a", 1, timeout)[0]
		id := func(img json.RawMessage) int64 {
			var r struct{ ID int64 }
			if err := json.Unmarshal(img, &r); err != nil {
				t.Fatalf("bad row image %s", img)
			}
			return r.ID
		}
		switch ch.Op {
		case models.OpInsert:
			rep[id(ch.New)] = string(ch.New)
		case models.OpUpdate:
			delete(rep, id(ch.Old))
			rep[id(ch.New)] = string(ch.New)
		case models.OpDelete:
			delete(rep, id(ch.Old))
		}
		if ch.Op == models.OpInsert && id(ch.New) == 1000 {
			break
		}
	}
	want := map[int64]string{}
	for _, line := range strings.Split(strings.TrimSpace(testenv.SQLite(t, db,
		"SELECT id, json_object('id', id, 'email', email, 'n', n) FROM u ORDER BY id;")), "\n") {
		idText, row, _ := strings.Cut(line, "|")
		n, _ := strconv.ParseInt(idText, 10, 64)
		want[n] = row
	}
	for id, row := range want {
		if got, ok := rep[id]; !ok {
			t.Errorf("%s: replica lacks row %s", what, row)
		} else {
			jsonEq(t, fmt.Sprintf("%s: replica row %d", what, id), json.RawMessage(got), row)
		}
	}
	for id, row := range rep {
		if _, ok := want[id]; !ok {
			t.Errorf("%s: replica has row %s, which the table no longer has (a deletion was not captured)", what, row)
		}
	}
	delete(rep, 1000)
	testenv.SQLite(t, db, "DELETE FROM u WHERE id = 1000;")
	if ch := c.WaitChanges("a", 1, timeout)[0]; ch.Op != models.OpDelete {
		t.Fatalf("%s: expected the marker's delete, got %+v", what, ch)
	}
}
