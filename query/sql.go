package query

import (
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
)

// SQL is a list query compiled against one table: the parts of a SELECT that carry
// the query's meaning. What a row is selected as, and how it is encoded, is the
// caller's. Names from the request appear only after they matched the table's schema
// (capture.Table.Ref), quoted; every value is a bound argument.
type SQL struct {
	Select []string  // the columns asked for, all checked; nil: every column
	Sort   []SortKey // the total order of the rows: the order asked for, then the key
	Where  []string  // conditions, ANDed
	Args   []any     // the values Where binds, in order
	Limit  int       // rows per page, 1..MaxLimit
}

// SortKey is one column of a list's sort key.
type SortKey struct {
	Ref        string // the column's SQL reference
	Desc       bool
	NullsFirst bool
}

// Compile compiles q against table t: it checks every column q names, builds the sort
// key and the filters' conditions, and clamps the page size. The cursor (q.After) is
// not decoded here, since it holds values in the row encoding: decode it, then call
// After.
//
// The sort key is the requested order, then the key (a rowid table whose declared key
// may hold NULLs also gets the rowid as a last tiebreak), so the order is total and
// keyset pagination neither skips nor repeats a row.
func Compile(q Query, t *capture.Table) (*SQL, error) {
	s := &SQL{Select: q.Select, Limit: q.Limit}
	if s.Limit <= 0 {
		s.Limit = DefaultLimit
	}
	s.Limit = min(s.Limit, MaxLimit)
	for _, c := range q.Select {
		if _, _, err := t.Ref(c); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	add := func(k SortKey) {
		if !seen[k.Ref] {
			seen[k.Ref] = true
			s.Sort = append(s.Sort, k)
		}
	}
	for _, o := range q.Order {
		ref, _, err := t.Ref(o.Column)
		if err != nil {
			return nil, err
		}
		add(SortKey{Ref: ref, Desc: o.Desc, NullsFirst: o.NullsFirst})
	}
	if rk := t.RowidKey; rk != "" {
		add(SortKey{Ref: rk, NullsFirst: true})
	} else {
		for _, k := range t.PrimaryKey {
			add(SortKey{Ref: capture.QuoteIdent(k), NullsFirst: true})
		}
		if t.HasRowid() && !pkIsRowid(t) {
			add(SortKey{Ref: t.RowidName, NullsFirst: true})
		}
	}
	// The top-level conjuncts stay separate conditions (the caller ANDs them), as
	// plain filters always were: the statement text does not change for them.
	top := []Expr{q.Where}
	if q.Where.Kind == ExprAnd {
		top = q.Where.Children
	}
	for _, f := range q.Filters {
		top = append(top, Leaf(f))
	}
	for _, e := range top {
		cond, args, err := exprSQL(t, e, 0)
		if err != nil {
			return nil, err
		}
		s.Where = append(s.Where, cond)
		s.Args = append(s.Args, args...)
	}
	return s, nil
}

// WhereSQL compiles a filter expression against table t to one SQL condition and the
// values it binds: the same condition Compile puts in a list query's WHERE.
func WhereSQL(e Expr, t *capture.Table) (string, []any, error) {
	return exprSQL(t, e, 0)
}

// exprSQL is the condition and arguments of a filter expression. Every column is
// checked (Ref) and quoted, every value bound; groups are parenthesised, so SQL's
// precedence never regroups them.
func exprSQL(t *capture.Table, e Expr, depth int) (string, []any, error) {
	if depth > maxGroupDepth*2+2 { // And/Not pairs: a parsed Expr never gets here
		return "", nil, badFilter("filter groups nest too deeply")
	}
	switch e.Kind {
	case ExprFilter:
		return filterSQL(t, e.Filter)
	case ExprNot:
		if len(e.Children) != 1 {
			return "", nil, badFilter("not takes one condition")
		}
		cond, args, err := exprSQL(t, e.Children[0], depth+1)
		if err != nil {
			return "", nil, err
		}
		return "NOT (" + cond + ")", args, nil
	case ExprAnd, ExprOr:
		if len(e.Children) == 0 {
			if e.Kind == ExprAnd {
				return "1", nil, nil
			}
			return "0", nil, nil
		}
		sep := " AND "
		if e.Kind == ExprOr {
			sep = " OR "
		}
		var b strings.Builder
		var args []any
		b.WriteByte('(')
		for i, c := range e.Children {
			cond, a, err := exprSQL(t, c, depth+1)
			if err != nil {
				return "", nil, err
			}
			if i > 0 {
				b.WriteString(sep)
			}
			b.WriteString(cond)
			args = append(args, a...)
		}
		b.WriteByte(')')
		return b.String(), args, nil
	}
	return "", nil, badFilter("unknown filter expression kind %d", e.Kind)
}

// After restricts the rows to those whose sort key comes after vals, the sort-key
// values of the previous page's last row, one per SortKey.
func (s *SQL) After(vals []any) {
	cond, args := keysetCond(s.Sort, vals)
	s.Where = append(s.Where, cond)
	s.Args = append(s.Args, args...)
}

// OrderBy is the ORDER BY list of the sort key.
func (s *SQL) OrderBy() string {
	var b strings.Builder
	for i, k := range s.Sort {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k.Ref)
		if k.Desc {
			b.WriteString(" DESC")
		}
		if k.NullsFirst == k.Desc { // not SQLite's default for this direction
			if k.NullsFirst {
				b.WriteString(" NULLS FIRST")
			} else {
				b.WriteString(" NULLS LAST")
			}
		}
	}
	return b.String()
}

// pkIsRowid reports whether the declared key is an INTEGER PRIMARY KEY, an alias of the
// rowid (so ordering by it already is a total order).
func pkIsRowid(e *capture.Table) bool {
	if e.WithoutRowid || len(e.PrimaryKey) != 1 {
		return false
	}
	c := e.Column(e.PrimaryKey[0])
	return c != nil && strings.EqualFold(strings.TrimSpace(c.Type), "INTEGER")
}

// filterSQL is the condition and arguments of one filter.
func filterSQL(e *capture.Table, f Filter) (string, []any, error) {
	ref, c, err := e.Ref(f.Column)
	if err != nil {
		return "", nil, err
	}
	one := func(op string) (string, []any, error) {
		if len(f.Values) != 1 {
			return "", nil, badFilter("filter on %q: %s takes one value", errors.Clip(f.Column), f.Op)
		}
		return ref + " " + op + " ?", []any{BindText(e, c, f.Values[0])}, nil
	}
	switch f.Op {
	case OpEq:
		return one("=")
	case OpNeq:
		return one("<>")
	case OpLt:
		return one("<")
	case OpLte:
		return one("<=")
	case OpGt:
		return one(">")
	case OpGte:
		return one(">=")
	case OpLike:
		if len(f.Values) != 1 {
			return "", nil, badFilter("filter on %q: like takes one pattern", errors.Clip(f.Column))
		}
		// LIKE compares text. On a column that is not TEXT-affine the unary + (a no-op
		// on the value) keeps SQLite's LIKE optimization off: it scans an index by the
		// pattern's text prefix when that prefix is no number, and so skips a REAL
		// ±Infinity, whose text "Inf" LIKE itself matches. With it, REST's answer does
		// not depend on which indexes exist, and is the stream's (TestAgreement found
		// this with random indexes). A TEXT column stores no numbers, so keeps it.
		if e.Affinity(c) != capture.AffText {
			ref = "+" + ref
		}
		return ref + " LIKE ?", []any{f.Values[0]}, nil
	case OpIn:
		if len(f.Values) == 0 {
			return "0", nil, nil
		}
		args := make([]any, len(f.Values))
		for i, v := range f.Values {
			args[i] = BindText(e, c, v)
		}
		return ref + " IN (" + strings.TrimSuffix(strings.Repeat("?,", len(args)), ",") + ")", args, nil
	case OpIs:
		if len(f.Values) == 1 && f.Values[0] == IsNull {
			return ref + " IS NULL", nil, nil
		}
		if len(f.Values) == 1 && f.Values[0] == IsNotNull {
			return ref + " IS NOT NULL", nil, nil
		}
		return "", nil, badFilter("filter on %q: is takes null or notnull", errors.Clip(f.Column))
	}
	return "", nil, badFilter("filter on %q: unknown operator %q", errors.Clip(f.Column), errors.Clip(string(f.Op)))
}

// keysetCond is the condition "the row's sort key comes after vals" in the order sorts
// describes, NULLs placed as the order places them. Comparisons use the columns' own
// collation and affinity, as ORDER BY does.
func keysetCond(sorts []SortKey, vals []any) (string, []any) {
	simple := true
	for i, s := range sorts {
		if s.Desc || !s.NullsFirst || vals[i] == nil {
			simple = false
			break
		}
	}
	if simple {
		// Ascending, NULLs first, no NULL in the cursor: a row value comparison, which
		// SQLite answers from the index. A NULL in a row makes the comparison NULL, and
		// such a row sorts before the cursor anyway.
		if len(sorts) == 1 {
			return sorts[0].Ref + " > ?", vals
		}
		refs := make([]string, len(sorts))
		for i, s := range sorts {
			refs[i] = s.Ref
		}
		return "(" + strings.Join(refs, ", ") + ") > (" + strings.TrimSuffix(strings.Repeat("?,", len(sorts)), ",") + ")", vals
	}
	var ors []string
	var args []any
	for i, s := range sorts {
		var after string
		var aargs []any
		v := vals[i]
		switch {
		case v == nil && s.NullsFirst:
			after = s.Ref + " IS NOT NULL"
		case v == nil:
			continue // NULLs last: nothing sorts after NULL on this column
		default:
			op := " > ?"
			if s.Desc {
				op = " < ?"
			}
			after = s.Ref + op
			if !s.NullsFirst {
				after = "(" + after + " OR " + s.Ref + " IS NULL)"
			}
			aargs = []any{v}
		}
		terms := make([]string, 0, i+1)
		for j := 0; j < i; j++ {
			terms = append(terms, sorts[j].Ref+" IS ?")
			args = append(args, vals[j])
		}
		terms = append(terms, after)
		args = append(args, aargs...)
		ors = append(ors, "("+strings.Join(terms, " AND ")+")")
	}
	if len(ors) == 0 {
		return "0", nil
	}
	return "(" + strings.Join(ors, " OR ") + ")", args
}

// BindText turns a text value from a URL (a key part or a filter value) into a bind
// parameter. Comparisons with a typed column convert it by the column's affinity ('7'
// finds INTEGER 7). A column with BLOB affinity (declared BLOB, or no type) compares
// storage classes as they are, so there x'HEX' binds as a BLOB, so does plain hex for
// a column declared BLOB, and a canonical integer binds as INTEGER.
func BindText(e *capture.Table, c *models.Column, s string) any {
	if e.Affinity(c) != capture.AffBlob {
		return s
	}
	if len(s) >= 3 && (s[0] == 'x' || s[0] == 'X') && s[1] == '\'' && s[len(s)-1] == '\'' {
		if b, err := hex.DecodeString(s[2 : len(s)-1]); err == nil {
			return b
		}
	}
	if c != nil && strings.Contains(strings.ToUpper(c.Type), "BLOB") {
		if b, err := hex.DecodeString(s); err == nil {
			return b
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && strconv.FormatInt(n, 10) == s {
		return n
	}
	return s
}
