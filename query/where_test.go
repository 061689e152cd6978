package query

import (
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
)

func f(col string, op Op, vals ...string) Expr {
	if vals == nil {
		vals = []string{}
	}
	return Leaf(Filter{Column: col, Op: op, Values: vals})
}

func TestParseWhere(t *testing.T) {
	tests := []struct {
		in   string
		want Expr
	}{
		{"", And()},
		{"done=eq.0", And(f("done", OpEq, "0"))},
		{"done=eq.0&owner=eq.alice", And(f("done", OpEq, "0"), f("owner", OpEq, "alice"))},
		{"owner=eq.alice&done=eq.0", And(f("done", OpEq, "0"), f("owner", OpEq, "alice"))}, // sorted
		{"n=gt.1&n=lt.9", And(f("n", OpGt, "1"), f("n", OpLt, "9"))},
		{"title=like.*milk*", And(f("title", OpLike, "%milk%"))},
		{"title=like.%25milk", And(f("title", OpLike, "%milk"))},
		{"title=not.like.*x*", And(Not(f("title", OpLike, "%x%")))},
		{"a=not.is.null", And(Not(f("a", OpIs, "null")))},
		{"a=is.not.null", And(f("a", OpIs, "notnull"))},
		{"a=not.in.(1,2)", And(Not(f("a", OpIn, "1", "2")))},
		{"t=eq.a+b", And(f("t", OpEq, "a b"))},
		{"t=eq.a%26b%3Dc", And(f("t", OpEq, "a&b=c"))},
		{"odd%20name=eq.1", And(f("odd name", OpEq, "1"))},
		{"or=(done.eq.1,title.like.*milk*)", And(Or(f("done", OpEq, "1"), f("title", OpLike, "%milk%")))},
		{"and=(a.eq.1,b.eq.2)", And(And(f("a", OpEq, "1"), f("b", OpEq, "2")))},
		{"not.or=(a.eq.1,b.eq.2)", And(Not(Or(f("a", OpEq, "1"), f("b", OpEq, "2"))))},
		{"not.and=(a.eq.1)", And(Not(And(f("a", OpEq, "1"))))},
		{"or=(a.eq.1,and(b.eq.2,c.eq.3))", And(Or(f("a", OpEq, "1"), And(f("b", OpEq, "2"), f("c", OpEq, "3"))))},
		{"or=(a.eq.1,not.and(b.eq.2,or(c.eq.3,d.is.null)))", And(Or(f("a", OpEq, "1"), Not(And(f("b", OpEq, "2"), Or(f("c", OpEq, "3"), f("d", OpIs, "null"))))))},
		{"or=(a.not.eq.1,b.not.like.x*)", And(Or(Not(f("a", OpEq, "1")), Not(f("b", OpLike, "x%"))))},
		{"or=(a.in.(1,2,3),b.in.())", And(Or(f("a", OpIn, "1", "2", "3"), f("b", OpIn)))},
		{`or=(a.in.("x,y","p)q",z),b.eq.1)`, And(Or(f("a", OpIn, "x,y", "p)q", "z"), f("b", OpEq, "1")))},
		{`or=(a.eq."x,y)",b.eq."say \"hi\"")`, And(Or(f("a", OpEq, "x,y)"), f("b", OpEq, `say "hi"`)))},
		{`or=("x.y".eq.1,"a,b".eq.2)`, And(Or(f("x.y", OpEq, "1"), f("a,b", OpEq, "2")))},
		{"or=(or.eq.1,and.eq.2,not.eq.3)", And(Or(f("or", OpEq, "1"), f("and", OpEq, "2"), f("not", OpEq, "3")))},
		{"or=(a.is.not.null,b.is.null)", And(Or(f("a", OpIs, "notnull"), f("b", OpIs, "null")))},
		{"or=(a.eq.,b.eq.(x)", And(Or(f("a", OpEq, ""), f("b", OpEq, "(x")))},
		{"or=(a.eq.1.5,b.gte.-2)", And(Or(f("a", OpEq, "1.5"), f("b", OpGte, "-2")))},
		{"or=(a.eq.1)&x=eq.2", And(Or(f("a", OpEq, "1")), f("x", OpEq, "2"))},
		{"or=(a.eq.1)&or=(b.eq.2)", And(Or(f("a", OpEq, "1")), Or(f("b", OpEq, "2")))},
	}
	for _, tc := range tests {
		got, err := ParseWhere(tc.in)
		if err != nil {
			t.Errorf("ParseWhere(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(norm(got), norm(tc.want)) {
			t.Errorf("ParseWhere(%q) =\n %+v\nwant\n %+v", tc.in, got, tc.want)
		}
		// String is canonical (and TestAgreement checks it means the same).
		s := got.String()
		again, err := ParseWhere(s)
		if err != nil || again.String() != s {
			t.Errorf("ParseWhere(%q).String() = %q, which reads back as %+v, %v", tc.in, s, again, err)
		}
	}
}

// norm makes nil and empty slices alike, for DeepEqual.
func norm(e Expr) Expr {
	if e.Kind == ExprFilter && e.Filter.Values == nil {
		e.Filter.Values = []string{}
	}
	if len(e.Children) == 0 {
		e.Children = nil
		return e
	}
	kids := make([]Expr, len(e.Children))
	for i, c := range e.Children {
		kids[i] = norm(c)
	}
	e.Children = kids
	return e
}

func TestParseWhereErrors(t *testing.T) {
	deep := "or=(" + strings.Repeat("and(", maxGroupDepth) + "a.eq.1" + strings.Repeat(")", maxGroupDepth) + ")"
	ok := "or=(" + strings.Repeat("and(", maxGroupDepth-1) + "a.eq.1" + strings.Repeat(")", maxGroupDepth-1) + ")"
	if _, err := ParseWhere(ok); err != nil {
		t.Fatalf("%d levels refused: %v", maxGroupDepth, err)
	}
	// The deepest expression the parser accepts, negated at every level, compiles both
	// ways.
	deepest := "not.or=(" + strings.Repeat("not.and(", maxGroupDepth-1) + "a.not.eq.1" + strings.Repeat(")", maxGroupDepth-1) + ")"
	e, err := ParseWhere(deepest)
	if err != nil {
		t.Fatal(err)
	}
	tb := &capture.Table{Table: models.Table{Name: "t", Columns: []models.Column{{Name: "a", Type: "TEXT"}}, Collations: map[string]string{}}}
	if _, _, err := WhereSQL(e, tb); err != nil {
		t.Fatalf("WhereSQL(%s): %v", deepest, err)
	}
	if _, err := CompilePredicate(e, tb); err != nil {
		t.Fatalf("CompilePredicate(%s): %v", deepest, err)
	}
	many := strings.TrimSuffix(strings.Repeat("a.eq.1,", maxFilters+1), ",")
	for _, tc := range []struct{ in, want string }{
		{"limit=5", `"limit" is not a filter`},
		{"a=eq.1&order=a", `"order" is not a filter`},
		{"select=a", "not a filter"},
		{"after=x", "not a filter"},
		{"a=eq.1;b=eq.2", "malformed"},
		{"a=eq.%zz", "malformed"},
		{"a=7", "want operator.value"},
		{"a=nope.7", `unknown operator "nope"`},
		{"a=not.not.eq.1", `unknown operator "not"`},
		{"a=in.1,2", "parenthesised"},
		{"or=a.eq.1", "parenthesised list"},
		{"or=()", "empty group"},
		{"or=(a.eq.1", "parenthesised"},
		{"or=(a.eq.1,)", "want column.operator.value"},
		{"or=(a)", "want column.operator.value"},
		{"or=(a.eq)", "want operator.value"},
		{"or=(a.eq.1)x", "parenthesised list"},
		{"or=(a.eq.1))", "after the closing parenthesis"},
		{"or=(a.eq.1;b.eq.2)", "malformed"},
		{"or=(a.eq.1 b.eq.2)", ""}, // a value with a space: fine, it is the value "1 b.eq.2"
		{"or=(and())", "empty group"},
		{"or=(a.nope.1)", `unknown operator "nope"`},
		{`or=("a.eq.1)`, "unterminated double quote"},
		{`or=(a.in.("x)`, "unterminated double quote"},
		{`or=(a.in.(1,2)`, "missing ')'"},
		{`or=(a.in.(1,2`, "parenthesised list"},
		{"or=(a.eq.1%2C2)", "want column.operator.value"},
		{"or=(a.in.1)", "in wants a parenthesised list"},
		{"or=(a.is.maybe)", "is takes null or notnull"},
		{"or=(x(a.eq.1))", "want column.operator.value"},
		{"not.or=(a.eq.1,)", "want column.operator.value"},
		{deep, "nest at most"},
		{"or=(" + many + ")", "too many filters"},
	} {
		_, err := ParseWhere(tc.in)
		if tc.want == "" {
			if err != nil {
				t.Errorf("ParseWhere(%q): %v", tc.in, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseWhere(%q) accepted, want error %q", tc.in, tc.want)
			continue
		}
		checkErr(t, err, errors.Invalid, "bad_filter", tc.want)
	}
}

// TestParseQueryGroups: REST's list parameters take groups and not. too, and the
// reserved names still are not filters.
func TestParseQueryGroups(t *testing.T) {
	v, _ := url.ParseQuery("limit=5&or=(done.eq.1,title.like.*milk*)&title=not.eq.x&select=a")
	q, err := ParseQuery(v)
	if err != nil {
		t.Fatal(err)
	}
	want := And(Or(f("done", OpEq, "1"), f("title", OpLike, "%milk%")), Not(f("title", OpEq, "x")))
	if !reflect.DeepEqual(norm(q.Where), norm(want)) || q.Limit != 5 || !reflect.DeepEqual(q.Select, []string{"a"}) {
		t.Fatalf("ParseQuery = %+v", q)
	}
	// Too many filters counts those inside groups.
	v = url.Values{"or": {"(" + strings.TrimSuffix(strings.Repeat("a.eq.1,", 60), ",") + ")"}, "and": {"(" + strings.TrimSuffix(strings.Repeat("a.eq.1,", 60), ",") + ")"}}
	_, err = ParseQuery(v)
	checkErr(t, err, errors.Invalid, "bad_filter", "too many filters")
}

// TestCompileGroups: groups compile to parenthesised SQL in which every value is a
// bound argument and every column a quoted, checked identifier.
func TestCompileGroups(t *testing.T) {
	tb := &capture.Table{Table: models.Table{Name: "t", Columns: []models.Column{{Name: "a", Type: "INTEGER"}, {Name: "b", Type: "TEXT"}, {Name: "or", Type: "TEXT"}}, PrimaryKey: []string{"a"}}}
	e, err := ParseWhere("a=gt.1&or=(b.eq.x,and(or.like.*y*,a.not.in.(1,2)),not.or(b.is.null,a.lt.0))")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(Query{Where: e}, tb)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`"a" > ?`, `("b" = ? OR ("or" LIKE ? AND NOT ("a" IN (?,?))) OR NOT (("b" IS NULL OR "a" < ?)))`}
	if !reflect.DeepEqual(s.Where, want) {
		t.Fatalf("Where = %q\nwant %q", s.Where, want)
	}
	if !reflect.DeepEqual(s.Args, []any{"1", "x", "%y%", "1", "2", "0"}) {
		t.Fatalf("Args = %#v", s.Args)
	}
	if _, err := Compile(Query{Where: Or(f("a", OpEq, "1"), f("nope", OpEq, "1"))}, tb); err == nil {
		t.Fatal("unknown column in a group accepted")
	} else {
		checkErr(t, err, errors.Invalid, "unknown_column", "nope")
	}
	// like on a column that is not TEXT-affine keeps SQLite's LIKE optimization off.
	s, err = Compile(Query{Where: And(f("a", OpLike, "I%"), f("b", OpLike, "I%"))}, tb)
	if err != nil || !reflect.DeepEqual(s.Where, []string{`+"a" LIKE ?`, `"b" LIKE ?`}) {
		t.Fatalf("like: %q, %v", s.Where, err)
	}
	// Filters built in code still work, ANDed with Where.
	s, err = Compile(Query{Filters: []Filter{{Column: "b", Op: OpEq, Values: []string{"z"}}}}, tb)
	if err != nil || !reflect.DeepEqual(s.Where, []string{`"b" = ?`}) {
		t.Fatalf("Filters: %+v, %v", s, err)
	}
}

// FuzzParseWhere: the where parser never panics, fails only with bad_filter, and what
// it accepts has a canonical String that reads back the same and compiles to SQL
// whose placeholders match its arguments.
func FuzzParseWhere(f *testing.F) {
	for _, s := range []string{
		"", "a=eq.1", "or=(a.eq.1,b.like.*x*)", "not.and=(a.eq.1,or(b.is.null,c.not.in.(1,\"2,3\")))",
		"a=not.like.x", `or=("x.y".eq."a,b")`, "or=(a.eq.1", "or=()", "limit=1", "a=eq.%zz", "a=in.(1,2)&b=is.notnull",
		"or=(and(or(and(a.eq.1))))", "x=eq.1) OR (1=1", "or=(a.eq.1) OR (1=1)", "a=eq.'; DROP TABLE t; --", "or=(a.eq./*,b.eq.*/)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseWhere(s)
		if err != nil {
			if _, code, _ := errors.Public(err); code != errors.CodeBadFilter {
				t.Fatalf("ParseWhere(%q): error %v has code %s, want bad_filter", s, err, code)
			}
			return
		}
		str := e.String()
		again, err := ParseWhere(str)
		if err != nil {
			t.Fatalf("ParseWhere(%q).String() = %q does not parse: %v", s, str, err)
		}
		if again.String() != str {
			t.Fatalf("String not canonical: %q → %q → %q", s, str, again.String())
		}
		// Compile against a table holding every column the expression names.
		tb := &capture.Table{Table: models.Table{Name: "t", Collations: map[string]string{}}}
		var walk func(Expr)
		walk = func(e Expr) {
			if e.Kind == ExprFilter && tb.Column(e.Filter.Column) == nil {
				tb.Columns = append(tb.Columns, models.Column{Name: e.Filter.Column, Type: "TEXT"})
			}
			for _, c := range e.Children {
				walk(c)
			}
		}
		walk(e)
		cond, args, err := WhereSQL(e, tb)
		if err != nil {
			t.Fatalf("WhereSQL(%q): %v", s, err)
		}
		stripped := cond
		for _, c := range tb.Columns {
			stripped = strings.ReplaceAll(stripped, capture.QuoteIdent(c.Name), "")
		}
		if n := strings.Count(stripped, "?"); n != len(args) {
			t.Fatalf("condition %q has %d placeholders for %d args", cond, n, len(args))
		}
		if _, err := CompilePredicate(e, tb); err != nil {
			t.Fatalf("CompilePredicate(%q): %v", s, err)
		}
	})
}
