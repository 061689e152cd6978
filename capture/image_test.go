package capture

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/store"
)

func TestDecodeImage(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]any
	}{
		{`null`, nil},
		{` null `, nil},
		{`{}`, map[string]any{}},
		{`{"a":1,"b":-7,"c":null}`, map[string]any{"a": int64(1), "b": int64(-7), "c": nil}},
		{`{"big":9007199254740993,"max":9223372036854775807,"min":-9223372036854775808}`,
			map[string]any{"big": int64(9007199254740993), "max": int64(math.MaxInt64), "min": int64(math.MinInt64)}},
		{`{"r":7.0,"s":1.5e-7,"t":-2.5,"u":1E3,"v":0.1}`, map[string]any{"r": 7.0, "s": 1.5e-7, "t": -2.5, "u": 1000.0, "v": 0.1}},
		// A whole REAL beyond int64 is written without a point: still a number.
		{`{"r":100000000000000000000,"n":-9223372036854775809}`, map[string]any{"r": 1e20, "n": -9223372036854775809.0}},
		{`{"i":{"$real":"Infinity"},"j":{"$real":"-Infinity"}}`, map[string]any{"i": math.Inf(1), "j": math.Inf(-1)}},
		{`{"b":{"$blob":"CAFE"},"e":{"$blob":""}}`, map[string]any{"b": []byte{0xca, 0xfe}, "e": []byte{}}},
		{`{"t":"plain","u":"é日本","q":"say \"hi\"\\ \/ \b\f\n\r\t","z":"a\u0000b","s":"\ud83d\ude00","x":""}`,
			map[string]any{"t": "plain", "u": "é日本", "q": "say \"hi\"\\ / \b\f\n\r\t", "z": "a\x00b", "s": "😀", "x": ""}},
		{`{"odd \"name\"":1,"":2,"$blob":3}`, map[string]any{`odd "name"`: int64(1), "": int64(2), "$blob": int64(3)}},
		{` { "a" : 1 , "b" : "x" } `, map[string]any{"a": int64(1), "b": "x"}},
	} {
		got, err := DecodeImage([]byte(tc.in))
		if err != nil {
			t.Errorf("DecodeImage(%s): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DecodeImage(%s) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{
		``, `{`, `[1]`, `"x"`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1}x`, `{"a":tru}`, `{"a":true}`, `{"a":[1]}`,
		`{"a":{"$blob":"XYZ"}}`, `{"a":{"$real":"NaN"}}`, `{"a":{"$other":"1"}}`, `{"a":"\x"}`, `{"a":"unterminated}`,
		`{"a":1.2.3}`, `{"a":--1}`, `{"a":{"$blob":"CA","x":1}}`, `nullx`,
	} {
		if got, err := DecodeImage([]byte(bad)); err == nil {
			t.Errorf("DecodeImage(%s) = %#v, want an error", bad, got)
		}
	}
}

// TestDecodeImageRoundTrip: every value appendValue writes (the native layout's
// encoder, which writes what the JSON layout's SQL writes) decodes back to itself —
// but for the format's one ambiguity, a whole REAL from 1e15 within int64, which
// decodes as the integer of the same value.
func TestDecodeImageRoundTrip(t *testing.T) {
	vals := []any{nil, int64(0), int64(-1), int64(math.MaxInt64), int64(math.MinInt64), int64(1) << 53, 7.0, 0.0, -2.5, 0.1,
		1.0 / 3, 5e-324, math.MaxFloat64, 1e21, 1e20, 123456.789, math.Inf(1), math.Inf(-1), 1e-7,
		"", "x", "é", "a\"b\\c\n\x01\x7f", []byte{}, []byte{0, 1, 0xff}, 1e15, 9007199254740993.0}
	shape := &Shape{Table: "t"}
	for i := range vals {
		shape.Members = append(shape.Members, "c"+string(rune('a'+i)))
	}
	raw := AppendRowJSON(nil, appendImage(nil, shape, vals))
	row, err := DecodeImage(raw)
	if err != nil {
		t.Fatalf("DecodeImage(%s): %v", raw, err)
	}
	for i, v := range vals {
		got := row[shape.Members[i]]
		if f, ok := v.(float64); ok && f == math.Trunc(f) && math.Abs(f) >= 1e15 && math.Abs(f) < 9.2e18 {
			if got != int64(f) {
				t.Errorf("%v decoded as %#v, want the integer %d", v, got, int64(f))
			}
			continue
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("%#v decoded as %#v (from %s)", v, got, raw)
		}
	}
}

func TestProjectImage(t *testing.T) {
	keep := func(names ...string) func(string) bool {
		return func(n string) bool {
			for _, x := range names {
				if x == n {
					return true
				}
			}
			return false
		}
	}
	img := `{"id":1,"title":"a,b:\"c\"}","n":{"$real":"Infinity"},"b":{"$blob":"CAFE"},"odd \"k\"":[1,{"x":"}"}],"z":null}`
	for _, tc := range []struct {
		in   string
		keep []string
		want string
	}{
		{img, []string{"id", "b"}, `{"id":1,"b":{"$blob":"CAFE"}}`},
		{img, []string{"title", "z"}, `{"title":"a,b:\"c\"}","z":null}`},
		{img, []string{`odd "k"`, "n"}, `{"n":{"$real":"Infinity"},"odd \"k\"":[1,{"x":"}"}]}`},
		{img, nil, `{}`},
		{img, []string{"id", "title", "n", "b", `odd "k"`, "z"}, img},
		{`null`, []string{"id"}, `null`},
		{`{}`, []string{"id"}, `{}`},
		{`{"a":1}`, []string{"a"}, `{"a":1}`},
	} {
		got := string(ProjectImage([]byte("prefix:"), []byte(tc.in), keep(tc.keep...)))
		if got != "prefix:"+tc.want {
			t.Errorf("ProjectImage(%s, %q) = %s, want %s", tc.in, tc.keep, got, tc.want)
		}
	}
	// Something that is not an object passes through whole.
	for _, bad := range []string{`{"a":1`, `{"a"`, `[1]`} {
		if got := string(ProjectImage(nil, []byte(bad), keep("a"))); got != bad {
			t.Errorf("ProjectImage(%s) = %s", bad, got)
		}
	}
}

func BenchmarkDecodeImage(b *testing.B) {
	raw := []byte(`{"id":123456,"title":"buy milk and \"eggs\"","done":0,"owner":"alice","score":17.25,"ts":1733150000123,"payload":{"$blob":"CAFEBABE"},"note":null}`)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeImage(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeImageEncodingJSON is the yardstick: encoding/json into a map, which
// would also lose integers beyond 2^53 and the storage classes of tagged values.
func BenchmarkDecodeImageEncodingJSON(b *testing.B) {
	raw := []byte(`{"id":123456,"title":"buy milk and \"eggs\"","done":0,"owner":"alice","score":17.25,"ts":1733150000123,"payload":{"$blob":"CAFEBABE"},"note":null}`)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProjectImage(b *testing.B) {
	raw := []byte(`{"id":123456,"title":"buy milk and \"eggs\"","done":0,"owner":"alice","score":17.25,"ts":1733150000123,"payload":{"$blob":"CAFEBABE"},"note":null}`)
	keep := func(n string) bool { return n == "id" || n == "title" || n == "done" }
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		dst = ProjectImage(dst[:0], raw, keep)
	}
}

func TestDeclaredCollations(t *testing.T) {
	cols := func(names ...string) []models.Column {
		var out []models.Column
		for _, n := range names {
			out = append(out, models.Column{Name: n})
		}
		return out
	}
	for _, tc := range []struct {
		sql   string
		cols  []models.Column
		want  map[string]string
		known bool
	}{
		{`CREATE TABLE t(a, b TEXT COLLATE NOCASE, c COLLATE rtrim NOT NULL)`, cols("a", "b", "c"), map[string]string{"b": "NOCASE", "c": "RTRIM"}, true},
		{`CREATE TABLE "t"("x y" VARCHAR(10, 2) collate "NoCase", [z] DEFAULT ('a' COLLATE nocase), w CHECK (w COLLATE nocase = 'x') COLLATE binary)`,
			cols("x y", "z", "w"), map[string]string{"x y": "NOCASE", "w": "BINARY"}, true},
		{"CREATE TABLE t(a TEXT /* COLLATE NOCASE */, b -- COLLATE NOCASE\n TEXT, c TEXT COLLATE NOCASE COLLATE RTRIM)", cols("a", "b", "c"), map[string]string{"c": "RTRIM"}, true},
		{`CREATE TABLE t(a, b, PRIMARY KEY (a COLLATE nocase), UNIQUE (b))`, cols("a", "b"), map[string]string{}, true},
		{`CREATE TABLE t(a, g AS (a COLLATE nocase) STORED, "q""t" TEXT COLLATE nocase)`, cols("a", "g", `q"t`), map[string]string{`q"t`: "NOCASE"}, true},
		{`CREATE TABLE t(a, "b,c" TEXT COLLATE NOCASE, d) WITHOUT ROWID`, cols("a", "b,c", "d"), map[string]string{"b,c": "NOCASE"}, true},
		{`CREATE TABLE t(a TEXT COLLATE my_coll)`, cols("a"), map[string]string{"a": "MY_COLL"}, true},
		// What does not fit the reported columns is unknown, not guessed.
		{`CREATE TABLE t(a, b)`, cols("a"), nil, false},
		{`CREATE TABLE t(a, b)`, cols("a", "c"), nil, false},
		{`CREATE TABLE t AS SELECT 1 AS a`, cols("a"), nil, false},
		{`CREATE TABLE t(a TEXT COLLATE)`, cols("a"), nil, false},
		{`CREATE TABLE t(a "unterminated`, cols("a"), nil, false},
	} {
		got, ok := declaredCollations(tc.sql, tc.cols)
		if ok != tc.known || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("declaredCollations(%s) = %v, %v; want %v, %v", tc.sql, got, ok, tc.want, tc.known)
		}
	}
}

// TestIntrospectCollations: collations come through introspection, also after ALTER
// TABLE ADD COLUMN and RENAME COLUMN, which edit the stored CREATE TABLE text.
func TestIntrospectCollations(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db := st.Writer()
	exec := func(q string) {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, email TEXT COLLATE NOCASE UNIQUE, code TEXT COLLATE RTRIM, plain TEXT)`)
	exec(`ALTER TABLE t ADD COLUMN tag TEXT COLLATE NOCASE`)
	exec(`ALTER TABLE t RENAME COLUMN plain TO "pl ain"`)
	var q store.Querier = db
	tb, err := introspect(ctx, q, "t")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"email": "NOCASE", "code": "RTRIM", "tag": "NOCASE"}
	if !reflect.DeepEqual(tb.Collations, want) {
		t.Fatalf("collations %v, want %v", tb.Collations, want)
	}
	if c, ok := tb.Collation("pl ain"); c != "BINARY" || !ok {
		t.Fatalf("pl ain: %q %v", c, ok)
	}
	// The collation SQLite uses is the one read: compare both ways.
	for col, coll := range map[string]string{"email": "NOCASE", "code": "RTRIM", "pl ain": "BINARY"} {
		var fromIndex string
		exec(`CREATE INDEX probe ON t(` + QuoteIdent(col) + `)`)
		if err := db.QueryRowContext(ctx, `SELECT coll FROM pragma_index_xinfo('probe') WHERE key = 1`).Scan(&fromIndex); err != nil {
			t.Fatal(err)
		}
		exec(`DROP INDEX probe`)
		if !strings.EqualFold(fromIndex, coll) {
			t.Errorf("%s: SQLite says %s, read %s", col, fromIndex, coll)
		}
	}
}

// FuzzDecodeImage: decoding and projecting never panic on any input, and projecting
// a decodable image to all of its columns decodes to the same row.
func FuzzDecodeImage(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":"x\u00e9","c":{"$blob":"CAFE"},"d":null,"e":1.5e-7,"f":{"$real":"-Infinity"}}`,
		`null`, `{}`, `{"a":-9223372036854775808,"b":100000000000000000000}`, `{"a":"\ud83d\ude00"}`, `{"a":[1,{"b":"}"}]}`, `{"a`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		row, err := DecodeImage(raw)
		proj := ProjectImage(nil, raw, func(string) bool { return true })
		if err != nil || row == nil {
			return
		}
		again, err := DecodeImage(proj)
		if err != nil {
			t.Fatalf("projection %s of %s does not decode: %v", proj, raw, err)
		}
		if len(again) != len(row) {
			t.Fatalf("projection %s of %s has %d members, want %d", proj, raw, len(again), len(row))
		}
	})
}
