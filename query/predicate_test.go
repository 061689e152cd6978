package query

import (
	"math"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
)

// predTable is a hand-built table with the given columns (name, declared type) and
// collations.
func predTable(colls map[string]string, cols ...string) *capture.Table {
	t := &capture.Table{Table: models.Table{Name: "t", PrimaryKey: []string{}, Collations: colls}}
	for i := 0; i+1 < len(cols); i += 2 {
		t.Columns = append(t.Columns, models.Column{Name: cols[i], Type: cols[i+1]})
	}
	t.RowidName, t.RowidKey = "rowid", "rowid"
	return t
}

func mustPredicate(t *testing.T, tb *capture.Table, where string) *Predicate {
	t.Helper()
	e, err := ParseWhere(where)
	if err != nil {
		t.Fatalf("ParseWhere(%q): %v", where, err)
	}
	p, err := CompilePredicate(e, tb)
	if err != nil {
		t.Fatalf("CompilePredicate(%q): %v", where, err)
	}
	return p
}

// TestMatchCases pins the SQLite rules TestAgreement checks at random, one by one.
func TestMatchCases(t *testing.T) {
	tb := predTable(map[string]string{"nc": "NOCASE", "rt": "RTRIM"},
		"i", "INTEGER", "r", "REAL", "num", "NUMERIC", "txt", "TEXT", "b", "BLOB", "any", "", "nc", "TEXT", "rt", "TEXT")
	big := int64(1)<<53 + 1
	for _, tc := range []struct {
		where string
		row   map[string]any
		want  bool
	}{
		// NULL: neq does not match it, NOT of NULL is NULL, OR/AND as in SQL.
		{"i=neq.1", map[string]any{"i": nil}, false},
		{"i=neq.1", map[string]any{}, false}, // missing is NULL
		{"i=not.eq.1", map[string]any{"i": nil}, false},
		{"i=is.null", map[string]any{}, true},
		{"i=not.is.null", map[string]any{"i": int64(0)}, true},
		{"or=(i.eq.1,txt.eq.x)", map[string]any{"i": nil, "txt": "x"}, true},
		{"not.or=(i.eq.1,txt.eq.x)", map[string]any{"i": nil, "txt": "y"}, false}, // NOT (NULL OR false) = NULL
		{"not.and=(i.eq.1,txt.eq.x)", map[string]any{"i": nil, "txt": "y"}, true}, // NOT (NULL AND false) = true
		{"i=in.()", map[string]any{"i": nil}, false},
		{"i=not.in.()", map[string]any{"i": nil}, true}, // SQLite: NULL NOT IN () is true
		{"i=in.(1,2)", map[string]any{"i": nil}, false},
		// Affinity: numeric text compares as a number in numeric columns.
		{"i=eq.7", map[string]any{"i": int64(7)}, true},
		{"i=eq.7.0", map[string]any{"i": int64(7)}, true},
		{"i=eq.%207", map[string]any{"i": int64(7)}, true},
		{"i=eq.1e1", map[string]any{"i": int64(10)}, true},
		{"i=lt.abc", map[string]any{"i": int64(10)}, true}, // numbers sort before text
		{"r=eq.7", map[string]any{"r": 7.0}, true},
		{"num=gt.9007199254740992", map[string]any{"num": big}, true},
		{"num=eq.9007199254740993", map[string]any{"num": big}, true},
		{"num=eq.9007199254740992.0", map[string]any{"num": big}, false}, // a REAL 2^53 is not 2^53+1
		{"num=gt.9007199254740992.0", map[string]any{"num": big}, true},
		{"num=eq.9223372036854775807", map[string]any{"num": int64(math.MaxInt64)}, true},
		{"num=lt.9223372036854775808", map[string]any{"num": int64(math.MaxInt64)}, true}, // that text is the REAL 2^63
		{"r=gt.1e999", map[string]any{"r": math.Inf(1)}, false},
		{"r=eq.1e999", map[string]any{"r": math.Inf(1)}, true},
		// TEXT affinity: compared as text.
		{"txt=eq.7", map[string]any{"txt": "7"}, true},
		{"txt=eq.7.0", map[string]any{"txt": "7"}, false},
		{"txt=gt.10", map[string]any{"txt": "9"}, true},
		// BLOB / no type: no conversion, storage class order.
		{"any=eq.7", map[string]any{"any": int64(7)}, true},
		{"any=eq.7", map[string]any{"any": "7"}, false},
		{"any=eq.7", map[string]any{"any": 7.0}, true},
		{"any=gt.7", map[string]any{"any": "1"}, true},       // TEXT > INTEGER
		{"any=lt.x'00'", map[string]any{"any": "zzz"}, true}, // TEXT < BLOB
		{"b=eq.CAFE", map[string]any{"b": []byte{0xca, 0xfe}}, true},
		{"b=eq.x'cafe'", map[string]any{"b": []byte{0xca, 0xfe}}, true},
		{"any=eq.CAFE", map[string]any{"any": []byte{0xca, 0xfe}}, false}, // plain hex is a BLOB only in a BLOB column
		// Collations.
		{"nc=eq.ALICE", map[string]any{"nc": "alice"}, true},
		{"nc=eq.É", map[string]any{"nc": "é"}, false}, // ASCII only
		{"nc=gt._", map[string]any{"nc": "A"}, true},  // folded to lower case: 'a' > '_'
		{"txt=gt._", map[string]any{"txt": "A"}, false},
		{"rt=eq.x", map[string]any{"rt": "x  "}, true},
		{"rt=eq.x", map[string]any{"rt": "x\t"}, false},
		{"nc=in.(BOB,ALICE)", map[string]any{"nc": "Alice"}, true},
		// LIKE: ASCII case-insensitive, numbers by their text, BLOBs never.
		{"txt=like.*MILK*", map[string]any{"txt": "buy milk"}, true},
		{"txt=like.É", map[string]any{"txt": "é"}, false},
		{"txt=like.a_c", map[string]any{"txt": "aéc"}, true}, // _ is one character, not one byte
		{"r=like.7.0", map[string]any{"r": 7.0}, true},
		{"r=like.1.0e%2B20", map[string]any{"r": 1e20}, true},
		{"r=like.1.0e%2B20", map[string]any{"r": int64(100000000000000000)}, false},
		{"r=like.1000000000000000.0", map[string]any{"r": int64(1000000000000000)}, true}, // REAL column: the image's integer is a REAL
		{"r=like.0.33333333333333332", map[string]any{"r": 1.0 / 3}, true},
		{"r=like.0.1", map[string]any{"r": 0.1}, true},
		{"r=like.Inf", map[string]any{"r": math.Inf(1)}, true},
		{"i=like.9007199254740993", map[string]any{"i": big}, true},
		{"b=like.*", map[string]any{"b": []byte("x")}, false},
		{"txt=like.a", map[string]any{"txt": "a\x00b"}, true}, // text ends at NUL for LIKE
		// rowid by its REST name.
		{"rowid=eq.5", map[string]any{"rowid": int64(5)}, true},
	} {
		p := mustPredicate(t, tb, tc.where)
		if got := p.Match(tc.row); got != tc.want {
			t.Errorf("%s over %#v: %v, want %v", tc.where, tc.row, got, tc.want)
		}
	}
}

func TestSQLiteNumberText(t *testing.T) {
	// From SQLite 3.54 itself: SELECT CAST(x AS TEXT).
	for _, tc := range []struct {
		r    float64
		want string
	}{
		{0.1, "0.1"}, {1e20, "1.0e+20"}, {1.0 / 3, "0.33333333333333332"}, {1e15, "1000000000000000.0"}, {7, "7.0"},
		{math.Inf(1), "Inf"}, {math.Inf(-1), "-Inf"}, {1.5e-7, "1.5e-07"}, {123456789012345678, "1.2345678901234568e+17"},
		{0.30000000000000004, "0.30000000000000004"}, {1e16, "10000000000000000.0"}, {1e17, "1.0e+17"}, {100, "100.0"},
		{5e-324, "4.9406564584124654e-324"}, {math.Copysign(0, -1), "0.0"}, {49.47, "49.47"}, {-2.5, "-2.5"},
	} {
		if got := realText(tc.r); got != tc.want {
			t.Errorf("realText(%v) = %q, want %q", tc.r, got, tc.want)
		}
	}
	for _, tc := range []struct {
		s    string
		want any
	}{
		{"7", int64(7)}, {" 7 ", int64(7)}, {"7.0", 7.0}, {"1e3", 1000.0}, {"+5", int64(5)}, {"-0", int64(0)}, {".5", 0.5},
		{"5.", 5.0}, {"1e", "1e"}, {"0x10", "0x10"}, {"abc", "abc"}, {"", ""}, {"9007199254740993", int64(9007199254740993)},
		{"9223372036854775808", 9223372036854775808.0}, {"-9223372036854775808", int64(math.MinInt64)}, {"1e999", math.Inf(1)},
		{"7\x00x", int64(7)}, {"- 5", "- 5"}, {"1.5e-7", 1.5e-7},
	} {
		if got := numericAffinity(tc.s); got != tc.want {
			t.Errorf("numericAffinity(%q) = %#v, want %#v", tc.s, got, tc.want)
		}
	}
}

// TestCompilePredicateErrors: unknown columns as REST reports them; collations the
// evaluator cannot reproduce refused for comparisons (LIKE and is do not use them).
func TestCompilePredicateErrors(t *testing.T) {
	tb := predTable(map[string]string{"u": "MY_COLL"}, "a", "TEXT", "u", "TEXT")
	for _, tc := range []struct{ where, code, msg string }{
		{"nope=eq.1", "unknown_column", `unknown column "nope" in table "t"`},
		{"or=(a.eq.1,nope.is.null)", "unknown_column", "nope"},
		{"u=eq.x", "bad_filter", "MY_COLL"},
		{"u=in.(x)", "bad_filter", "MY_COLL"},
	} {
		e, err := ParseWhere(tc.where)
		if err != nil {
			t.Fatal(err)
		}
		_, err = CompilePredicate(e, tb)
		if err == nil {
			t.Errorf("CompilePredicate(%q) accepted", tc.where)
			continue
		}
		checkErr(t, err, errors.Invalid, tc.code, tc.msg)
	}
	for _, ok := range []string{"u=like.x", "u=is.null", "a=eq.x"} {
		mustPredicate(t, tb, ok)
	}
	// Unknown collations (a table not introspected): comparisons refused.
	e, _ := ParseWhere("a=eq.x")
	if _, err := CompilePredicate(e, predTable(nil, "a", "TEXT")); err == nil || !strings.Contains(err.Error(), "collation") {
		t.Fatalf("unknown collations: %v", err)
	}
}

// TestEqKey: which filters are indexable, and IndexKey agreeing with Match on the
// values that are equal under each affinity and collation.
func TestEqKey(t *testing.T) {
	tb := predTable(map[string]string{"nc": "NOCASE", "rt": "RTRIM"}, "i", "INTEGER", "r", "REAL", "txt", "TEXT", "any", "", "nc", "TEXT", "rt", "TEXT")
	for _, tc := range []struct {
		where string
		col   string
		ok    bool
	}{
		{"i=eq.7", "i", true},
		{"i=eq.7&txt=like.x", "i", true},
		{"and=(txt.like.x,nc.eq.A)", "nc", true},
		{"i=not.eq.7", "", false},
		{"or=(i.eq.7,i.eq.8)", "", false},
		{"not.and=(i.eq.7)", "", false},
		{"i=in.(7)", "", false},
		{"i=gt.7", "", false},
	} {
		p := mustPredicate(t, tb, tc.where)
		col, _, ok := p.EqKey()
		if ok != tc.ok || col != tc.col {
			t.Errorf("EqKey(%q) = %q, %v; want %q, %v", tc.where, col, ok, tc.col, tc.ok)
		}
	}
	for _, tc := range []struct {
		where string
		col   string
		vals  []any // every one matches the filter, so each must have its key
		other []any // none matches: none may share it (not required, but true of IndexKey)
	}{
		{"i=eq.7", "i", []any{int64(7), 7.0}, []any{int64(8), "7x", 7.5}},
		{"i=eq.7.0", "i", []any{int64(7), 7.0}, nil},
		{"r=eq.7", "r", []any{7.0, int64(7)}, nil},
		{"i=eq.9007199254740993", "i", []any{int64(9007199254740993)}, []any{int64(9007199254740992), 9007199254740992.0}},
		{"i=eq.9223372036854775808", "i", []any{9223372036854775808.0}, []any{int64(math.MaxInt64)}},
		{"txt=eq.7", "txt", []any{"7", int64(7)}, []any{"7.0", 7.0}},
		{"any=eq.7", "any", []any{int64(7), 7.0}, []any{"7", []byte("7")}},
		{"any=eq.x'37'", "any", []any{[]byte("7")}, []any{"7", int64(7)}},
		{"nc=eq.Alice", "nc", []any{"alice", "ALICE", "aLiCe"}, []any{"alice ", "álice"}},
		{"rt=eq.x", "rt", []any{"x", "x ", "x   "}, []any{" x", "x\t"}},
	} {
		p := mustPredicate(t, tb, tc.where)
		col, key, ok := p.EqKey()
		if !ok || col != tc.col {
			t.Fatalf("EqKey(%q) = %q, %v", tc.where, col, ok)
		}
		for _, v := range tc.vals {
			if !p.Match(map[string]any{col: v}) {
				t.Errorf("%s does not match %#v", tc.where, v)
			}
			if k, ok := IndexKey(tb, col, v); !ok || k != key {
				t.Errorf("%s: IndexKey(%#v) = %q, %v; EqKey %q", tc.where, v, k, ok, key)
			}
		}
		for _, v := range tc.other {
			if p.Match(map[string]any{col: v}) {
				t.Errorf("%s matches %#v", tc.where, v)
			}
			if k, _ := IndexKey(tb, col, v); k == key {
				t.Errorf("%s: IndexKey(%#v) = %q is EqKey's", tc.where, v, k)
			}
		}
	}
	if _, ok := IndexKey(tb, "i", nil); ok {
		t.Error("NULL has an index key")
	}
	if _, ok := IndexKey(tb, "nope", int64(1)); ok {
		t.Error("an unknown column has an index key")
	}
}

func TestColumns(t *testing.T) {
	tb := predTable(map[string]string{}, "a", "TEXT", "b", "INTEGER", "or", "TEXT")
	p := mustPredicate(t, tb, "b=gt.1&or=(a.eq.x,or.like.y,b.lt.9,rowid.eq.1)")
	got := strings.Join(p.Columns(), ",")
	if got != "b,a,or,rowid" {
		t.Fatalf("Columns = %s", got)
	}
}

func BenchmarkMatch(b *testing.B) {
	tb := predTable(map[string]string{"owner": "NOCASE"}, "id", "INTEGER", "title", "TEXT", "done", "INTEGER", "owner", "TEXT", "score", "REAL")
	row, err := capture.DecodeImage([]byte(`{"rowid":1,"id":123456,"title":"buy milk and eggs","done":0,"owner":"Alice","score":17.25}`))
	if err != nil {
		b.Fatal(err)
	}
	for _, where := range []string{
		"done=eq.0",
		"done=eq.0&owner=eq.alice",
		"title=like.*x*",
		"or=(done.eq.1,title.like.*milk*)&score=gte.10&owner=in.(bob,carol,alice)",
	} {
		e, err := ParseWhere(where)
		if err != nil {
			b.Fatal(err)
		}
		p, err := CompilePredicate(e, tb)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(where, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Match(row)
			}
		})
	}
}

func BenchmarkIndexKey(b *testing.B) {
	tb := predTable(map[string]string{"owner": "NOCASE"}, "id", "INTEGER", "title", "TEXT", "done", "INTEGER", "owner", "TEXT", "device", "TEXT")
	for _, tc := range []struct {
		col string
		v   any
	}{{"device", "sensor-00042"}, {"owner", "Alice"}, {"id", int64(123456)}} {
		b.Run(tc.col, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				IndexKey(tb, tc.col, tc.v)
			}
		})
	}
}
