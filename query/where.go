package query

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/sqlws/sqlws/errors"
)

// The filter grammar, shared by REST list requests (ParseQuery) and stream
// subscriptions (ParseWhere):
//
//	where  = pair *( "&" pair )                         ; ANDed
//	pair   = column "=" [ "not." ] op "." value         ; a filter
//	       | ( "or" | "and" | "not.or" | "not.and" ) "=" group
//	group  = "(" item *( "," item ) ")"
//	item   = [ "not." ] ( "or" | "and" ) group
//	       | column "." [ "not." ] op "." value
//
// Inside a group a column is up to the first '.', or double-quoted ("a.b".eq.1), and a
// value is up to the next ',' or ')', or double-quoted ("a,b"), with backslash escaping
// the next character, as in in-lists; an in-list is parenthesised as in a pair.

// ParseWhere parses a where string exactly as it would appear after '?' in a REST list
// URL (percent-encoding allowed, '+' is a space): filters and logical groups joined by
// '&', ANDed. The list parameters that are not filters (limit, after, order, select)
// are a bad_filter error here. The empty string is no condition (Expr.IsEmpty).
// Column names are checked against a table later (Compile, CompilePredicate).
func ParseWhere(s string) (Expr, error) {
	v, err := url.ParseQuery(s)
	if err != nil {
		// url's message quotes the offending text unclipped; say what is wrong instead.
		return Expr{}, badFilter("where: malformed query string (a bad %%-escape or a ';')")
	}
	for k := range v {
		switch k {
		case ParamLimit, ParamAfter, ParamOrder, ParamSelect:
			return Expr{}, badFilter("where: %q is not a filter", k)
		}
	}
	return parseFilters(v)
}

// parseFilters parses filter parameters (every parameter of v is a filter or a
// group) into their conjunction (always an And, one child per parameter value), in a
// stable order (sorted by name, then as given), so that equal requests compile to
// equal statements (one entry in the statement cache).
func parseFilters(v url.Values) (Expr, error) {
	keys := make([]string, 0, len(v))
	n := 0
	for k := range v {
		keys = append(keys, k)
		n += len(v[k])
	}
	sort.Strings(keys)
	// A cheap early bound before parsing anything: each parameter is at least one
	// filter.
	if n > maxFilters {
		return Expr{}, badFilter("too many filters: %d; at most %d in one request", n, maxFilters)
	}
	p := &whereParser{}
	var out []Expr
	for _, k := range keys {
		for _, expr := range v[k] {
			e, err := p.param(k, expr)
			if err != nil {
				return Expr{}, err
			}
			out = append(out, e)
		}
	}
	if p.filters > maxFilters {
		return Expr{}, badFilter("too many filters: %d; at most %d in one request", p.filters, maxFilters)
	}
	if p.values > maxFilterValues {
		return Expr{}, badFilter("too many filter values: %d in all; at most %d in one request", p.values, maxFilterValues)
	}
	return And(out...), nil
}

// whereParser counts what it parses, for the request's bounds.
type whereParser struct {
	filters int // leaf filters
	values  int // values they bind (an in-list counts each)
}

// leaf parses one filter and counts it.
func (p *whereParser) leaf(column, expr string, not bool) (Expr, error) {
	f, err := ParseFilter(column, expr)
	if err != nil {
		return Expr{}, err
	}
	p.filters++
	p.values += len(f.Values)
	if p.filters > maxFilters {
		return Expr{}, badFilter("too many filters: more than %d in one request", maxFilters)
	}
	e := Leaf(f)
	if not {
		e = Not(e)
	}
	return e, nil
}

// param parses one name=value parameter.
func (p *whereParser) param(name, value string) (Expr, error) {
	kind, not, ok := groupName(name)
	if !ok {
		// col=not.op.value negates the filter. "not" is not an operator, so a value
		// starting with it was always an error before.
		if rest, neg := strings.CutPrefix(value, "not."); neg {
			return p.leaf(name, rest, true)
		}
		return p.leaf(name, value, false)
	}
	if len(value) < 2 || value[0] != '(' || value[len(value)-1] != ')' {
		return Expr{}, badFilter("%s: want a parenthesised list, e.g. %s=(a.eq.1,b.lt.2)", name, name)
	}
	g := &groupParser{p: p, s: value, i: 1, name: name}
	e, err := g.group(kind, 1)
	if err != nil {
		return Expr{}, err
	}
	if g.i != len(value) {
		return Expr{}, g.errorf("unexpected text after the closing parenthesis")
	}
	if not {
		e = Not(e)
	}
	return e, nil
}

// groupName reports whether a parameter name is a logical group, which kind, and
// whether it is negated.
func groupName(name string) (kind ExprKind, not, ok bool) {
	switch name {
	case ParamOr:
		return ExprOr, false, true
	case ParamAnd:
		return ExprAnd, false, true
	case ParamNotOr:
		return ExprOr, true, true
	case ParamNotAnd:
		return ExprAnd, true, true
	}
	return 0, false, false
}

// groupParser parses the value of a group parameter, s, from position i.
type groupParser struct {
	p    *whereParser
	s    string
	i    int
	name string // the parameter, for messages
}

func (g *groupParser) errorf(format string, args ...any) error {
	at := g.s[min(g.i, len(g.s)):]
	return badFilter("%s: %s at %q", g.name, fmt.Sprintf(format, args...), errors.Clip(at))
}

// group parses the items of a group whose '(' has been read, through its ')'.
func (g *groupParser) group(kind ExprKind, depth int) (Expr, error) {
	if depth > maxGroupDepth {
		return Expr{}, g.errorf("groups nest at most %d deep", maxGroupDepth)
	}
	var items []Expr
	for {
		if g.i < len(g.s) && g.s[g.i] == ')' && len(items) == 0 {
			return Expr{}, g.errorf("empty group")
		}
		e, err := g.item(depth)
		if err != nil {
			return Expr{}, err
		}
		items = append(items, e)
		if g.i >= len(g.s) {
			return Expr{}, g.errorf("missing ')'")
		}
		c := g.s[g.i]
		g.i++
		if c == ')' {
			return Expr{Kind: kind, Children: items}, nil
		}
		if c != ',' {
			return Expr{}, g.errorf("want ',' or ')'")
		}
	}
}

// item parses one element of a group: a nested group or column.op.value.
func (g *groupParser) item(depth int) (Expr, error) {
	rest := g.s[g.i:]
	not := false
	if r, ok := strings.CutPrefix(rest, "not."); ok && (strings.HasPrefix(r, "and(") || strings.HasPrefix(r, "or(")) {
		not, rest = true, r
		g.i += len("not.")
	}
	for _, sub := range []struct {
		prefix string
		kind   ExprKind
	}{{"and(", ExprAnd}, {"or(", ExprOr}} {
		if strings.HasPrefix(rest, sub.prefix) {
			g.i += len(sub.prefix)
			e, err := g.group(sub.kind, depth+1)
			if err != nil {
				return Expr{}, err
			}
			if not {
				e = Not(e)
			}
			return e, nil
		}
	}

	// column.[not.]op.value
	col, err := g.word(true)
	if err != nil {
		return Expr{}, err
	}
	if g.i >= len(g.s) || g.s[g.i] != '.' {
		return Expr{}, g.errorf("want column.operator.value")
	}
	g.i++
	if r, ok := strings.CutPrefix(g.s[g.i:], "not."); ok && r != "" {
		not = true
		g.i += len("not.")
	}
	start := g.i
	for g.i < len(g.s) && g.s[g.i] != '.' && g.s[g.i] != ',' && g.s[g.i] != ')' {
		g.i++
	}
	op := g.s[start:g.i]
	if g.i >= len(g.s) || g.s[g.i] != '.' {
		return Expr{}, g.errorf("filter on %q: want operator.value", errors.Clip(col))
	}
	g.i++
	if Op(op) == OpIn {
		list, err := g.inList()
		if err != nil {
			return Expr{}, err
		}
		return g.p.leaf(col, op+"."+list, not)
	}
	val, err := g.word(false)
	if err != nil {
		return Expr{}, err
	}
	return g.p.leaf(col, op+"."+val, not)
}

// word reads a column name (up to '.') or a value (up to ',' or ')'), either of them
// double-quoted instead, with backslash escapes.
func (g *groupParser) word(column bool) (string, error) {
	if g.i < len(g.s) && g.s[g.i] == '"' {
		var b strings.Builder
		for g.i++; g.i < len(g.s); g.i++ {
			c := g.s[g.i]
			if c == '\\' && g.i+1 < len(g.s) {
				g.i++
				b.WriteByte(g.s[g.i])
				continue
			}
			if c == '"' {
				g.i++
				return b.String(), nil
			}
			b.WriteByte(c)
		}
		return "", g.errorf("unterminated double quote")
	}
	start := g.i
	for g.i < len(g.s) {
		c := g.s[g.i]
		if c == ',' || c == ')' || (column && (c == '.' || c == '(')) {
			break
		}
		g.i++
	}
	return g.s[start:g.i], nil
}

// inList reads an in-list, "(" … ")", as text for ParseFilter: items may be
// double-quoted and then hold ',' and ')'.
func (g *groupParser) inList() (string, error) {
	start := g.i
	if g.i >= len(g.s) || g.s[g.i] != '(' {
		return "", g.errorf("in wants a parenthesised list, e.g. in.(1,2)")
	}
	g.i++
	atItem := true
	for g.i < len(g.s) {
		c := g.s[g.i]
		switch {
		case atItem && c == '"':
			g.i++
			for g.i < len(g.s) && g.s[g.i] != '"' {
				if g.s[g.i] == '\\' {
					g.i++
				}
				g.i++
			}
			if g.i >= len(g.s) {
				return "", g.errorf("unterminated double quote")
			}
			g.i++
			atItem = false
			continue
		case c == ',':
			atItem = true
		case c == ')':
			g.i++
			return g.s[start:g.i], nil
		default:
			atItem = false
		}
		g.i++
	}
	return "", g.errorf("in-list without ')'")
}

// String is e as a where string that ParseWhere reads back to the same meaning:
// top-level conjuncts as col=op.value pairs (percent-encoded), sorted, everything else
// in and=(…)/or=(…) groups. It is canonical for what ParseWhere returns: where strings
// that differ only in the order of their parameters give the same String, and
// ParseWhere(e.String()).String() == e.String(), so it can key subscriptions that
// share an evaluation. An Or without children (which no parse yields) has no
// where string and comes out as the invalid "or=()".
func (e Expr) String() string {
	var parts []string
	var add func(e Expr)
	add = func(e Expr) {
		if e.Kind == ExprAnd { // a conjunction in a conjunction: its conjuncts
			for _, c := range e.Children {
				add(c)
			}
			return
		}
		parts = append(parts, pairString(e))
	}
	add(e)
	// Conjuncts commute: sorted, equal filters written in any order have one String.
	sort.Strings(parts)
	return strings.Join(parts, "&")
}

// pairString is one top-level conjunct as a name=value parameter.
func pairString(e Expr) string {
	not := false
	x := e
	if x.Kind == ExprNot && len(x.Children) == 1 {
		not, x = true, x.Children[0]
	}
	switch x.Kind {
	case ExprFilter:
		if _, _, group := groupName(x.Filter.Column); !group {
			v := filterText(x.Filter)
			if not {
				v = "not." + v
			}
			return url.QueryEscape(x.Filter.Column) + "=" + url.QueryEscape(v)
		}
	case ExprAnd, ExprOr:
		if len(x.Children) > 0 {
			name := ParamAnd
			if x.Kind == ExprOr {
				name = ParamOr
			}
			if not {
				name = "not." + name
			}
			return name + "=" + url.QueryEscape(groupText(x.Children))
		}
	}
	return ParamAnd + "=" + url.QueryEscape(groupText([]Expr{e}))
}

// groupText is a parenthesised list of group items.
func groupText(items []Expr) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(itemText(it))
	}
	b.WriteByte(')')
	return b.String()
}

// itemText is one group item.
func itemText(e Expr) string {
	switch e.Kind {
	case ExprFilter:
		return quoteIf(e.Filter.Column, ".,()\"\\", true) + "." + groupFilterText(e.Filter)
	case ExprNot:
		if len(e.Children) == 1 {
			c := e.Children[0]
			switch {
			case c.Kind == ExprFilter:
				return quoteIf(c.Filter.Column, ".,()\"\\", true) + ".not." + groupFilterText(c.Filter)
			case (c.Kind == ExprAnd || c.Kind == ExprOr) && len(c.Children) > 0:
				return "not." + itemText(c)
			}
			return "not.and(" + itemText(c) + ")"
		}
	case ExprAnd, ExprOr:
		name := "and"
		if e.Kind == ExprOr {
			name = "or"
		}
		if len(e.Children) == 0 {
			return name + "()" // no where string has an empty group
		}
		return name + groupText(e.Children)
	}
	return "and()"
}

// filterText is op.value as a pair's value (in-list items quoted when they must be).
func filterText(f Filter) string {
	switch f.Op {
	case OpIn:
		return "in." + inText(f.Values)
	case OpIs:
		if len(f.Values) == 1 {
			return "is." + f.Values[0]
		}
	}
	if len(f.Values) == 1 {
		return string(f.Op) + "." + f.Values[0]
	}
	return string(f.Op) + "."
}

// groupFilterText is op.value inside a group, the value quoted when it holds a ',' or
// ')' or starts with '"'.
func groupFilterText(f Filter) string {
	if f.Op == OpIn || f.Op == OpIs || len(f.Values) != 1 {
		return filterText(f)
	}
	v := f.Values[0]
	if strings.ContainsAny(v, ",)") || strings.HasPrefix(v, `"`) {
		v = QuoteListItem(v)
	}
	return string(f.Op) + "." + v
}

func inText(vals []string) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(quoteIf(v, ",()\"\\", true))
	}
	b.WriteByte(')')
	return b.String()
}

// quoteIf double-quotes s when it holds one of chars, is empty (when empty is set), or
// starts with '"'.
func quoteIf(s, chars string, empty bool) string {
	if (empty && s == "") || strings.ContainsAny(s, chars) || strings.HasPrefix(s, `"`) {
		return QuoteListItem(s)
	}
	return s
}
