package query_test

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/query"
)

var (
	agreeSeed  = flag.Uint64("agree.seed", 0, "TestAgreement: the seed to run (0: a new one each run, printed on failure)")
	agreeRuns  = flag.Int("agree.tables", 6, "TestAgreement: random tables per run")
	agreeCases = flag.Int("agree.filters", 400, "TestAgreement: random filters per table")
)

// agreeTypes are the declared column types of the random tables: every affinity,
// several spellings of each.
var agreeTypes = []string{"INTEGER", "INT", "BIGINT", "REAL", "DOUBLE", "FLOAT", "NUMERIC", "DECIMAL(10,2)", "BOOLEAN", "TEXT", "VARCHAR(20)", "CLOB", "BLOB", ""}

// agreeStrictTypes are the types a STRICT table allows.
var agreeStrictTypes = []string{"INT", "INTEGER", "REAL", "TEXT", "BLOB", "ANY"}

// agreeNames are column names, odd ones included: the group names, dots, commas,
// quotes, spaces, non-ASCII.
var agreeNames = []string{"a", "b", "c", "d", "e", "f", "n", "or", "and", "not", "x.y", "a,b", `q"t`, "sp ace", "é", "日本", "(p)", "not.or", "limit2", "Title", "rowid"}

var (
	two53 = int64(1) << 53
)

// agreeRowValues are values written into the random rows, as Go binds them (SQLite
// then applies the column's affinity).
var agreeRowValues = []any{
	nil, nil,
	int64(0), int64(1), int64(-1), int64(7), int64(42), int64(1000), two53, two53 + 1, two53 - 1, -two53 - 1, -two53,
	int64(math.MaxInt64), int64(math.MinInt64), int64(math.MaxInt64 - 1), int64(1000000000000000), int64(123456789012345),
	0.0, 7.0, 1.5, 0.1, 0.30000000000000004, 1.0 / 3, 1e20, 2.5e-7, -2.5, 123456.789, math.Inf(1), math.Inf(-1),
	1e300, 5e-324, 9007199254740992.0, 42.0, -7.0, 1e15 + 0.5, 49.47, 100.0, 1e-5,
	"7", " 7", "7.0", "1e3", "7 ", "abc", "ABC", "Abc", "abc ", "milk", "Milk shake", "é", "É", "日本", "", "x y",
	"0x10", "-0", "+5", "1e", ".5", "5.", "9223372036854775808", "9007199254740993", "a%b", "a_b", "_", "%",
	"1.0e+20", "Inf", "NULL", "a\x00b", "7\x00", "zz", "Z", "mIlK", "1,2",
	[]byte{}, []byte{0xca, 0xfe}, []byte("7"), []byte("abc"), []byte{0}, []byte{0xff, 0xfe}, []byte("milk"), []byte{0xc3, 0xa9},
}

// bigWholeReal reports whether v is a whole REAL the image writes without a decimal
// point that still fits an int64 (capture.DecodeImage): its storage class is lost in
// a column of no-type or BLOB affinity, the format's documented limit.
func bigWholeReal(v any) bool {
	f, ok := v.(float64)
	return ok && f == math.Trunc(f) && math.Abs(f) >= 1e15 && math.Abs(f) < 9.3e18
}

// agreeFilterValues are filter values as they come from a URL.
var agreeFilterValues = []string{
	"7", "7.0", "7.5", " 7", "7 ", "1e3", "1000", "abc", "ABC", "abc ", "Abc", "milk", "MILK", "x'CAFE'", "CAFE", "cafe", "x'37'",
	"9007199254740993", "9007199254740992", "9007199254740992.0", "-9223372036854775808", "9223372036854775807", "9223372036854775808",
	"0.1", "0.30000000000000004", "0.33333333333333331", "0.33333333333333332", "1.0e+20", "1e20", "100000000000000000000", "Inf", "-Inf",
	"", "é", "É", "日本", "0x10", "1e999", "-1e999", "0", "-0", "0.0", "-1", "42", "1.5", "2.5e-7", "zz", "Z", "1e", ".5", "5.",
	"123456789012345", "1000000000000000", "49.47", "a\x00b", "7\x00x", "NULL", "null", "_", "%", "+5", "1,2", `"q"`, "1) OR (1=1", "'; DROP TABLE t; --", "/*", "*/",
}

// agreePatterns are LIKE patterns (after '*' → '%').
var agreePatterns = []string{
	"%", "", "a%", "%b%", "_", "__", "7%", "%.0", "%e+%", "1.0e+20", "%milk%", "M_LK%", "%é%", "%É%", "%7", "0.3333%", "0.1",
	"%c", "ab_", "%\x00%", "a%%b", "%_%", "_%_", "7.0", "7", "%5", "Inf", "-%", "%e-0%", "9007199254740993", "%日%", "日_", "%A%", "%z",
	"%3332", "%3331", "49.47", "1.0e+15", "1000000000000000", "%.%",
}

var agreeOps = []query.Op{query.OpEq, query.OpNeq, query.OpLt, query.OpLte, query.OpGt, query.OpGte, query.OpLike, query.OpIn, query.OpIs}

// TestAgreement is the guarantee the stream's filters rest on: for random tables
// (every affinity, declared collations), random rows (NULLs, integers at and beyond
// 2^53 and at the int64 extremes, REALs whole and not, numeric-looking text, unicode,
// BLOBs) and random filters (groups, not, like, in, is), the rows SQLite selects with
// the SQL Compile produces are exactly the rows Predicate.Match accepts, evaluated
// over the row images the capture triggers wrote for the same rows — read from the
// changelog and decoded with capture.DecodeImage, as the stream sees them. It also
// checks EqKey against IndexKey on every matching row, and that String round-trips.
func TestAgreement(t *testing.T) {
	seed := *agreeSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -agree.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	dir := t.TempDir()
	path := filepath.Join(dir, "agree.db")
	ctx := context.Background()

	type table struct {
		name string
		cols []string // the columns written
		gen  bool     // and a generated column "gen"
	}
	var tables []table
	d := testdb.Open(t, path, testdb.Options{})
	for ti := range *agreeRuns {
		tb := table{name: fmt.Sprintf("t%d", ti)}
		names := slices.Clone(agreeNames)
		rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		ncol := 3 + rng.IntN(6)
		// The kinds of table: a rowid alias key, no declared key (rows keyed by the
		// rowid, which filters can name), WITHOUT ROWID, STRICT, and one too wide for
		// the changelog's native layout, whose images SQL encodes (the JSON layout).
		kind := rng.IntN(5)
		if kind == 4 {
			for i := len(names); i < 40; i++ {
				names = append(names, fmt.Sprintf("w%d", i))
			}
			ncol = 36
		}
		types, suffix := agreeTypes, ""
		defs := []string{`"id" INTEGER PRIMARY KEY`}
		switch kind {
		case 1:
			defs = []string{`"id" INTEGER`}
		case 2:
			suffix = " WITHOUT ROWID"
		case 3:
			types, suffix = agreeStrictTypes, " STRICT"
		}
		for _, n := range names[:ncol] {
			typ := types[rng.IntN(len(types))]
			def := capture.QuoteIdent(n) + " " + typ
			switch rng.IntN(6) {
			case 0:
				def += " COLLATE NOCASE"
			case 1:
				def += " COLLATE RTRIM"
			case 2:
				def += " collate binary"
			}
			defs = append(defs, def)
			tb.cols = append(tb.cols, n)
		}
		if rng.IntN(3) == 0 {
			// A generated column: the value of another, under its own affinity.
			typ := types[rng.IntN(len(types))]
			defs = append(defs, `"gen" `+typ+` GENERATED ALWAYS AS (`+capture.QuoteIdent(tb.cols[0])+`) VIRTUAL`)
			tb.gen = true
		}
		if _, err := d.Store.Writer().ExecContext(ctx, "CREATE TABLE "+tb.name+" ("+strings.Join(defs, ", ")+")"+suffix); err != nil {
			t.Fatal(err)
		}
		// Indexes let the planner answer with seeks, IN lookups and the LIKE
		// optimization (an index with NOCASE) instead of plain comparisons: the answer
		// must not change.
		for i, c := range tb.cols {
			if rng.IntN(3) != 0 {
				continue
			}
			coll := []string{"", " COLLATE NOCASE", " COLLATE BINARY", " COLLATE RTRIM"}[rng.IntN(4)]
			q := fmt.Sprintf("CREATE INDEX %s_i%d ON %s(%s%s)", tb.name, i, tb.name, capture.QuoteIdent(c), coll)
			if _, err := d.Store.Writer().ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		tables = append(tables, tb)
	}
	d.Close()

	d = testdb.Install(t, path, testdb.Options{})
	if err := d.Schema.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		et, ok := d.Schema.Table(tb.name)
		if !ok {
			t.Fatalf("table %s not in the schema", tb.name)
		}
		if et.Collations == nil {
			t.Fatalf("collations of %s not read", tb.name)
		}
		// value is a random value for column c; a STRICT table refuses some, then
		// another is tried.
		value := func(c string) any {
			for {
				v := agreeRowValues[rng.IntN(len(agreeRowValues))]
				aff := et.Affinity(et.Column(c))
				if (aff == capture.AffBlob || aff == capture.AffText) && bigWholeReal(v) {
					continue
				}
				if n, ok := v.(int64); ok && tb.gen && c == tb.cols[0] && bigWholeReal(float64(n)) {
					// gen copies it, maybe made a REAL by this column's affinity,
					// under its own affinity, which may be BLOB.
					continue
				}
				if tb.gen && c == tb.cols[0] && bigWholeReal(v) {
					continue
				}
				return v
			}
		}
		exec := func(q string, args ...any) error {
			_, err := d.Store.Writer().ExecContext(ctx, q, args...)
			if err != nil && !strings.Contains(err.Error(), "cannot store") {
				t.Fatalf("%s %v: %v", q, args, err)
			}
			return err
		}
		nrows := 40 + rng.IntN(40)
		for id := 1; id <= nrows; id++ {
			cols := `"id"`
			for _, c := range tb.cols {
				cols += ", " + capture.QuoteIdent(c)
			}
			for try := 0; ; try++ {
				args := []any{int64(id)}
				marks := []string{"?"}
				for _, c := range tb.cols {
					v := value(c)
					if try > 50 {
						v = nil
					}
					args = append(args, v)
					marks = append(marks, "?")
				}
				if exec("INSERT INTO "+tb.name+" ("+cols+") VALUES ("+strings.Join(marks, ",")+")", args...) == nil {
					break
				}
			}
		}
		// Updates: the stream sees the last image of each row.
		for range nrows / 2 {
			c := tb.cols[rng.IntN(len(tb.cols))]
			exec(`UPDATE `+tb.name+` SET `+capture.QuoteIdent(c)+` = ? WHERE "id" = ?`, value(c), int64(1+rng.IntN(nrows)))
		}
	}

	// The images as the stream sees them: from the changelog, finished.
	images := map[string]map[int64]map[string]any{}
	for _, c := range d.ReadAll(t, 0) {
		row, err := capture.DecodeImage(c.New)
		if err != nil {
			t.Fatalf("seed %d: decode %s: %v", seed, c.New, err)
		}
		if images[c.Table] == nil {
			images[c.Table] = map[int64]map[string]any{}
		}
		images[c.Table][row["id"].(int64)] = row
	}

	cases, eqChecked := 0, 0
	for _, tb := range tables {
		et, _ := d.Schema.Table(tb.name)
		cols := append([]string{"id"}, tb.cols...)
		if tb.gen {
			cols = append(cols, "gen")
		}
		if et.RowidKey != "" {
			cols = append(cols, et.RowidKey)
		}
		for range *agreeCases {
			e := randomExpr(rng, cols, 0)
			where := e.String()
			parsed, err := query.ParseWhere(where)
			if err != nil {
				t.Fatalf("seed %d: ParseWhere(%q) of %+v: %v", seed, where, e, err)
			}
			if again := parsed.String(); again != where {
				if p2, err := query.ParseWhere(again); err != nil || p2.String() != again {
					t.Fatalf("seed %d: String is not canonical: %q → %q", seed, where, again)
				}
			}
			cond, args, err := query.WhereSQL(parsed, et)
			if err != nil {
				t.Fatalf("seed %d: WhereSQL(%q): %v", seed, where, err)
			}
			rows, err := d.Store.Reader().QueryContext(ctx, "SELECT id FROM "+tb.name+" WHERE "+cond+" ORDER BY id", args...)
			if err != nil {
				t.Fatalf("seed %d: %s: %v", seed, cond, err)
			}
			var want []int64
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					t.Fatal(err)
				}
				want = append(want, id)
			}
			rows.Close()
			p, err := query.CompilePredicate(parsed, et)
			if err != nil {
				t.Fatalf("seed %d: CompilePredicate(%q): %v", seed, where, err)
			}
			var got []int64
			for id := int64(1); id <= int64(len(images[tb.name])); id++ {
				if p.Match(images[tb.name][id]) {
					got = append(got, id)
				}
			}
			if !reflect.DeepEqual(got, want) {
				var schema string
				d.Store.Reader().QueryRowContext(ctx, "SELECT group_concat(sql, ';\n') FROM sqlite_master WHERE tbl_name = ?", tb.name).Scan(&schema)
				t.Fatalf("seed %d: table %s, where %q:\nSQL   %s %v\nSQLite selects %v\nMatch accepts  %v\n%s%s",
					seed, tb.name, where, cond, args, want, got, explainDiff(images[tb.name], want, got), schema)
			}
			if col, key, ok := p.EqKey(); ok {
				for _, id := range got {
					k, kok := query.IndexKey(et, col, images[tb.name][id][col])
					if !kok || k != key {
						t.Fatalf("seed %d: where %q: EqKey %q=%q but row %d's IndexKey is %q, %v", seed, where, col, key, id, k, kok)
					}
					eqChecked++
				}
			}
			cases++
		}
		// Equality alone: a row matches col=eq.v exactly when its index key is the
		// filter's, so an index lookup neither misses a row nor needs more than that.
		for _, col := range cols {
			for range 20 {
				v := agreeFilterValues[rng.IntN(len(agreeFilterValues))]
				e := query.And(query.Leaf(query.Filter{Column: col, Op: query.OpEq, Values: []string{v}}))
				p, err := query.CompilePredicate(e, et)
				if err != nil {
					t.Fatal(err)
				}
				c, key, ok := p.EqKey()
				if !ok || c != col {
					t.Fatalf("seed %d: %s=eq.%s: EqKey %q %v", seed, col, v, c, ok)
				}
				for id, row := range images[tb.name] {
					k, kok := query.IndexKey(et, col, row[col])
					if p.Match(row) != (kok && k == key) {
						t.Fatalf("seed %d: table %s, %s=eq.%q: row %d (%#v) matches %v, IndexKey %q, EqKey %q",
							seed, tb.name, col, v, id, row[col], p.Match(row), k, key)
					}
					eqChecked++
				}
			}
		}
	}
	t.Logf("%d filters over %d tables agree; %d EqKey checks", cases, len(tables), eqChecked)
}

// explainDiff lists the images of the rows SQLite and Match disagree on.
func explainDiff(rows map[int64]map[string]any, want, got []int64) string {
	var b strings.Builder
	for id := int64(1); id <= int64(len(rows)); id++ {
		if slices.Contains(want, id) != slices.Contains(got, id) {
			fmt.Fprintf(&b, "row %d: %#v\n", id, rows[id])
		}
	}
	return b.String()
}

// randomExpr is a random filter expression over cols.
func randomExpr(rng *rand.Rand, cols []string, depth int) query.Expr {
	if depth < 3 && rng.IntN(3) == 0 {
		n := 1 + rng.IntN(3)
		kids := make([]query.Expr, n)
		for i := range kids {
			kids[i] = randomExpr(rng, cols, depth+1)
		}
		var e query.Expr
		if rng.IntN(2) == 0 {
			e = query.And(kids...)
		} else {
			e = query.Or(kids...)
		}
		if rng.IntN(4) == 0 {
			e = query.Not(e)
		}
		return e
	}
	f := query.Filter{Column: cols[rng.IntN(len(cols))], Op: agreeOps[rng.IntN(len(agreeOps))]}
	switch f.Op {
	case query.OpLike:
		f.Values = []string{agreePatterns[rng.IntN(len(agreePatterns))]}
	case query.OpIn:
		n := rng.IntN(4)
		if rng.IntN(4) == 0 {
			n = 9 + rng.IntN(20) // long enough to be looked up by key
		}
		f.Values = []string{}
		for range n {
			f.Values = append(f.Values, agreeFilterValues[rng.IntN(len(agreeFilterValues))])
		}
	case query.OpIs:
		f.Values = []string{[]string{query.IsNull, query.IsNotNull}[rng.IntN(2)]}
	default:
		f.Values = []string{agreeFilterValues[rng.IntN(len(agreeFilterValues))]}
	}
	e := query.Leaf(f)
	if rng.IntN(5) == 0 {
		e = query.Not(e)
	}
	return e
}
