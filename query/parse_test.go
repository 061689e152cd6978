package query

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
)

func modelsColumn(name string) models.Column { return models.Column{Name: name, Type: "TEXT"} }

func TestParseFilter(t *testing.T) {
	tests := []struct {
		expr    string
		op      Op
		values  []string
		errCode string
	}{
		{expr: "eq.7", op: OpEq, values: []string{"7"}},
		{expr: "eq.", op: OpEq, values: []string{""}},
		{expr: "eq.a.b.c", op: OpEq, values: []string{"a.b.c"}},
		{expr: "neq.x", op: OpNeq, values: []string{"x"}},
		{expr: "lt.1", op: OpLt, values: []string{"1"}},
		{expr: "lte.1.5", op: OpLte, values: []string{"1.5"}},
		{expr: "gt.-3", op: OpGt, values: []string{"-3"}},
		{expr: "gte.z", op: OpGte, values: []string{"z"}},
		{expr: "like.a%", op: OpLike, values: []string{"a%"}},
		{expr: "like.*milk*", op: OpLike, values: []string{"%milk%"}},
		{expr: "in.()", op: OpIn, values: []string{}},
		{expr: "in.(1)", op: OpIn, values: []string{"1"}},
		{expr: "in.(1,2,3)", op: OpIn, values: []string{"1", "2", "3"}},
		{expr: `in.("a,b",c)`, op: OpIn, values: []string{"a,b", "c"}},
		{expr: `in.("say \"hi\"","back\\slash")`, op: OpIn, values: []string{`say "hi"`, `back\slash`}},
		{expr: `in.(a,)`, op: OpIn, values: []string{"a", ""}},
		{expr: `in.(,)`, op: OpIn, values: []string{"", ""}},
		{expr: `in.("")`, op: OpIn, values: []string{""}},
		{expr: `in.(a"b)`, op: OpIn, values: []string{`a"b`}},
		{expr: "is.null", op: OpIs, values: []string{"null"}},
		{expr: "is.NULL", op: OpIs, values: []string{"null"}},
		{expr: "is.notnull", op: OpIs, values: []string{"notnull"}},
		{expr: "is.not.null", op: OpIs, values: []string{"notnull"}},

		{expr: "7", errCode: "bad_filter"},
		{expr: "", errCode: "bad_filter"},
		{expr: "equals.7", errCode: "bad_filter"},
		{expr: "EQ.7", errCode: "bad_filter"},
		{expr: "in.1,2", errCode: "bad_filter"},
		{expr: "in.(1,2", errCode: "bad_filter"},
		{expr: `in.("a)`, errCode: "bad_filter"},
		{expr: `in.("a"b)`, errCode: "bad_filter"},
		{expr: "is.true", errCode: "bad_filter"},
		{expr: "is.", errCode: "bad_filter"},
		{expr: `eq'); DROP TABLE t;--.1`, errCode: "bad_filter"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			f, err := ParseFilter("col", tc.expr)
			if tc.errCode != "" {
				if err == nil {
					t.Fatalf("ParseFilter(%q) = %+v, want error %s", tc.expr, f, tc.errCode)
				}
				checkErr(t, err, errors.Invalid, tc.errCode, "col")
				return
			}
			if err != nil {
				t.Fatalf("ParseFilter(%q): %v", tc.expr, err)
			}
			if f.Column != "col" || f.Op != tc.op || !reflect.DeepEqual(f.Values, tc.values) {
				t.Fatalf("ParseFilter(%q) = %+v, want op %s values %q", tc.expr, f, tc.op, tc.values)
			}
		})
	}
}

// checkErr fails unless err is classified as kind with code and its client message
// contains every one of want.
func checkErr(t *testing.T, err error, kind errors.Kind, code string, want ...string) {
	t.Helper()
	if errors.KindOf(err) != kind {
		t.Fatalf("error %v: kind %v, want %v", err, errors.KindOf(err), kind)
	}
	_, c, msg := errors.Public(err)
	if string(c) != code {
		t.Fatalf("error %v: code %q, want %q", err, c, code)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Fatalf("error message %q does not name %q", msg, w)
		}
	}
}

func TestParseInTooMany(t *testing.T) {
	expr := "in.(" + strings.TrimSuffix(strings.Repeat("1,", maxInValues+1), ",") + ")"
	if _, err := ParseFilter("c", expr); err == nil {
		t.Fatal("in list over the limit accepted")
	}
	expr = "in.(" + strings.TrimSuffix(strings.Repeat("1,", maxInValues), ",") + ")"
	if _, err := ParseFilter("c", expr); err != nil {
		t.Fatalf("in list at the limit refused: %v", err)
	}
}

func TestParseOrder(t *testing.T) {
	tests := []struct {
		in   string
		want []Order
		err  bool
	}{
		{in: "a", want: []Order{{Column: "a", NullsFirst: true}}},
		{in: "a.asc", want: []Order{{Column: "a", NullsFirst: true}}},
		{in: "a.desc", want: []Order{{Column: "a", Desc: true}}},
		{in: "a.DESC", want: []Order{{Column: "a", Desc: true}}},
		{in: "a.desc.nullsfirst", want: []Order{{Column: "a", Desc: true, NullsFirst: true}}},
		{in: "a.nullslast", want: []Order{{Column: "a"}}},
		{in: "a.asc,b.desc", want: []Order{{Column: "a", NullsFirst: true}, {Column: "b", Desc: true}}},
		{in: "x.y.desc", want: []Order{{Column: "x.y", Desc: true}}},
		{in: `"a,b".desc`, want: []Order{{Column: "a,b", Desc: true}}},
		{in: `"a.desc"`, want: []Order{{Column: "a.desc", NullsFirst: true}}},
		{in: `"x""y"`, err: true}, // the quote closes after x; "y" follows without a dot
		{in: `"it's \"q\"".asc`, want: []Order{{Column: `it's "q"`, NullsFirst: true}}},
		{in: "", err: true},
		{in: "a,", err: true},
		{in: ".desc", err: true},
		{in: "a.sideways", want: []Order{{Column: "a.sideways", NullsFirst: true}}}, // a column named so; unknown later
		{in: `"a".sideways`, err: true},
		{in: "a.desc.asc", err: true},
		{in: `"a`, err: true},
	}
	for _, tc := range tests {
		got, err := ParseOrder(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("ParseOrder(%q) = %+v, want error", tc.in, got)
			} else {
				checkErr(t, err, errors.Invalid, "bad_order")
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseOrder(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseSelect(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "*", want: nil},
		{in: "a", want: []string{"a"}},
		{in: "a,b,a", want: []string{"a", "b"}},
		{in: `"a,b",c`, want: []string{"a,b", "c"}},
		{in: `x"; DROP TABLE t;--`, want: []string{`x"; DROP TABLE t;--`}},
		{in: "", err: true},
		{in: "a,,b", err: true},
		{in: `"a"b`, err: true},
	}
	for _, tc := range tests {
		got, err := ParseSelect(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("ParseSelect(%q) = %q, want error", tc.in, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSelect(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseQuery(t *testing.T) {
	v, _ := url.ParseQuery("limit=5&after=abc&order=b.desc&select=a,b&b=gt.1&a=eq.x&b=lt.9")
	q, err := ParseQuery(v)
	if err != nil {
		t.Fatal(err)
	}
	want := Query{
		Where:  And(Leaf(Filter{"a", OpEq, []string{"x"}}), Leaf(Filter{"b", OpGt, []string{"1"}}), Leaf(Filter{"b", OpLt, []string{"9"}})),
		Order:  []Order{{Column: "b", Desc: true}},
		Select: []string{"a", "b"},
		Limit:  5,
		After:  "abc",
	}
	if !reflect.DeepEqual(q, want) {
		t.Fatalf("ParseQuery = %+v\nwant %+v", q, want)
	}

	q, err = ParseQuery(url.Values{})
	if err != nil || q.Limit != DefaultLimit || q.Select != nil || q.Order != nil || q.Filters != nil || !q.Where.IsEmpty() {
		t.Fatalf("empty query = %+v, %v", q, err)
	}
	q, err = ParseQuery(url.Values{"limit": {"100000"}})
	if err != nil || q.Limit != MaxLimit {
		t.Fatalf("limit over the maximum: %+v, %v; want clamped to %d", q, err, MaxLimit)
	}
	for _, bad := range []string{"0", "-1", "x", "1.5", ""} {
		if _, err := ParseQuery(url.Values{"limit": {bad}}); err == nil {
			t.Errorf("limit=%q accepted", bad)
		} else {
			checkErr(t, err, errors.Invalid, "bad_limit")
		}
	}
	if _, err := ParseQuery(url.Values{"a": {"nope.1"}}); err == nil {
		t.Error("unknown operator accepted")
	} else {
		checkErr(t, err, errors.Invalid, "bad_filter", "nope", "a")
	}
}

// FuzzParseFilter checks that the filter parser never panics, accepts only known
// operators, and that in-lists survive quoting: every list it returns, re-encoded with
// QuoteListItem, parses back to the same values.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"eq.7", "neq.", "in.()", "in.(1,2)", `in.("a,b","c\"d",e)`, `in.("x`, `in.("a"b)`,
		"is.null", "is.notnull", "like.*a%", "gt.1.5", "nope.1", "", ".", "in.(,,)", `in.(\)`,
		`in.("\\",",")`, "lt.\x00", "eq.é", `order"; DROP TABLE t;--`,
	} {
		f.Add("col", s)
	}
	f.Fuzz(func(t *testing.T, col, expr string) {
		flt, err := ParseFilter(col, expr)
		if err != nil {
			if errors.KindOf(err) != errors.Invalid {
				t.Fatalf("ParseFilter(%q, %q): error %v is not Invalid", col, expr, err)
			}
			return
		}
		if flt.Column != col {
			t.Fatalf("column %q, want %q", flt.Column, col)
		}
		switch flt.Op {
		case OpEq, OpNeq, OpLt, OpLte, OpGt, OpGte, OpLike:
			if len(flt.Values) != 1 {
				t.Fatalf("%s with %d values", flt.Op, len(flt.Values))
			}
			if !strings.HasPrefix(expr, string(flt.Op)+".") {
				t.Fatalf("op %s from %q", flt.Op, expr)
			}
		case OpIn:
			quoted := make([]string, len(flt.Values))
			for i, v := range flt.Values {
				quoted[i] = QuoteListItem(v)
			}
			again, err := ParseFilter(col, "in.("+strings.Join(quoted, ",")+")")
			if err != nil {
				t.Fatalf("re-encoded list of %q does not parse: %v", expr, err)
			}
			if len(again.Values) != len(flt.Values) || (len(flt.Values) > 0 && !reflect.DeepEqual(again.Values, flt.Values)) {
				t.Fatalf("in round trip: %q → %q → %q", expr, flt.Values, again.Values)
			}
		case OpIs:
			if len(flt.Values) != 1 || (flt.Values[0] != IsNull && flt.Values[0] != IsNotNull) {
				t.Fatalf("is with %q", flt.Values)
			}
		default:
			t.Fatalf("unknown op %q accepted from %q", flt.Op, expr)
		}
		// Whatever the parser accepts must build valid, parameterised SQL: the column is
		// only ever an identifier and values are arguments.
		e := &capture.Table{}
		e.Name = "t"
		e.Columns = append(e.Columns, modelsColumn(col))
		cond, args, err := filterSQL(e, flt)
		if err != nil {
			t.Fatalf("filterSQL(%+v): %v", flt, err)
		}
		if n := strings.Count(strings.ReplaceAll(cond, capture.QuoteIdent(col), ""), "?"); n != len(args) {
			t.Fatalf("condition %q has %d placeholders for %d args", cond, n, len(args))
		}
		if !strings.HasPrefix(cond, capture.QuoteIdent(col)) && cond != "0" {
			t.Fatalf("condition %q does not start with the quoted column", cond)
		}
	})
}

// TestParseQueryBounds: a request binds a bounded number of values in all, so it is
// refused as the client's mistake (400) long before SQLite's "too many SQL
// variables" would turn it into a 500.
func TestParseQueryBounds(t *testing.T) {
	in := "in.(" + strings.TrimSuffix(strings.Repeat("1,", maxInValues), ",") + ")"
	v := url.Values{}
	for i := range 40 {
		v.Set(fmt.Sprintf("c%d", i), in)
	}
	_, err := ParseQuery(v)
	checkErr(t, err, errors.Invalid, "bad_filter", "too many filter values: 40000 in all; at most 10000")
	v = url.Values{}
	for i := range maxFilterValues / maxInValues {
		v.Set(fmt.Sprintf("c%d", i), in)
	}
	if _, err := ParseQuery(v); err != nil {
		t.Fatalf("%d values in all refused: %v", maxFilterValues, err)
	}
	v = url.Values{}
	for range maxFilters + 1 {
		v.Add("c", "is.null")
	}
	_, err = ParseQuery(v)
	checkErr(t, err, errors.Invalid, "bad_filter", "too many filters: 101")
	_, err = ParseQuery(url.Values{"order": {strings.TrimSuffix(strings.Repeat("c,", maxOrderColumns+1), ",")}})
	checkErr(t, err, errors.Invalid, "bad_order", "33 columns; at most 32")
}

// Client-supplied names and values are echoed clipped to errors.ClipLen bytes.
func TestFilterErrorsClipNames(t *testing.T) {
	huge := strings.Repeat("n", 900<<10)
	for _, tc := range []struct{ col, expr string }{
		{huge, "eq"},
		{huge, "bogus.1"},
		{"c", huge + ".1"},
		{"c", "is." + huge},
		{"c", `in.("a"` + huge + ")"},
	} {
		_, err := ParseFilter(tc.col, tc.expr)
		if err == nil {
			t.Fatalf("filter %.20s=%.20s accepted", tc.col, tc.expr)
		}
		_, _, msg := errors.Public(err)
		if len(msg) > 2*errors.ClipLen+200 || !strings.Contains(msg, strings.Repeat("n", errors.ClipLen)+"…") {
			t.Fatalf("message of %d bytes does not clip the name: %.300s", len(msg), msg)
		}
	}
	_, err := ParseOrder(huge + ".sideways")
	if _, _, msg := errors.Public(err); len(msg) > 400 {
		t.Fatalf("order message of %d bytes", len(msg))
	}
}
