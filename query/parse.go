package query

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/sqlws/sqlws/errors"
)

func badFilter(format string, args ...any) error {
	return errors.WithCode(errors.Invalid, errors.CodeBadFilter, format, args...)
}

// ParseFilter parses the value of a filter parameter, e.g. "eq.7", "in.(1,\"a,b\")",
// "is.null", for column. It knows nothing of the table: the column is checked later.
//
// like takes an SQL LIKE pattern in which '*' is also a '%' wildcard (as in PostgREST:
// '%' must be percent-encoded in a URL).
func ParseFilter(column, expr string) (Filter, error) {
	f := Filter{Column: column}
	op, rest, ok := strings.Cut(expr, ".")
	if !ok {
		return f, badFilter("filter on %q: want operator.value, e.g. eq.7", errors.Clip(column))
	}
	f.Op = Op(op)
	switch f.Op {
	case OpEq, OpNeq, OpLt, OpLte, OpGt, OpGte:
		f.Values = []string{rest}
	case OpLike:
		if len(rest) > maxLikePattern {
			return f, badFilter("filter on %q: a like pattern has at most %d bytes", errors.Clip(column), maxLikePattern)
		}
		f.Values = []string{strings.ReplaceAll(rest, "*", "%")}
	case OpIn:
		if len(rest) < 2 || rest[0] != '(' || rest[len(rest)-1] != ')' {
			return f, badFilter("filter on %q: in wants a parenthesised list, e.g. in.(1,2)", errors.Clip(column))
		}
		items, err := splitItems(rest[1 : len(rest)-1])
		if err != nil {
			return f, badFilter("filter on %q: %s", errors.Clip(column), err.Error())
		}
		if len(items) > maxInValues {
			return f, badFilter("filter on %q: in takes at most %d values", errors.Clip(column), maxInValues)
		}
		f.Values = make([]string, 0, len(items))
		for _, it := range items {
			if it.tail != "" {
				return f, badFilter("filter on %q: unexpected %q after a quoted value", errors.Clip(column), errors.Clip(it.tail))
			}
			f.Values = append(f.Values, it.text)
		}
	case OpIs:
		switch strings.ToLower(rest) {
		case IsNull:
			f.Values = []string{IsNull}
		case IsNotNull, "not_null", "not.null":
			f.Values = []string{IsNotNull}
		default:
			return f, badFilter("filter on %q: is takes null or notnull, not %q", errors.Clip(column), errors.Clip(rest))
		}
	default:
		return f, badFilter("filter on %q: unknown operator %q (want eq, neq, lt, lte, gt, gte, like, in or is)", errors.Clip(column), errors.Clip(op))
	}
	return f, nil
}

// ParseOrder parses an order parameter: comma-separated col[.asc|.desc][.nullsfirst|
// .nullslast]. A column whose name holds a comma or a dot can be double-quoted:
// "a.b".desc.
func ParseOrder(s string) ([]Order, error) {
	items, err := splitItems(s)
	if err != nil {
		return nil, errors.WithCode(errors.Invalid, errors.CodeBadOrder, "order: %s", err.Error())
	}
	if len(items) == 0 {
		return nil, errors.WithCode(errors.Invalid, errors.CodeBadOrder, "order: no columns")
	}
	if len(items) > maxOrderColumns {
		return nil, errors.WithCode(errors.Invalid, errors.CodeBadOrder, "order: %d columns; at most %d", len(items), maxOrderColumns)
	}
	out := make([]Order, 0, len(items))
	for _, it := range items {
		o := Order{Column: it.text}
		var mods []string
		if it.quoted {
			if it.tail != "" {
				if it.tail[0] != '.' {
					return nil, errors.WithCode(errors.Invalid, errors.CodeBadOrder, "order: unexpected %q after a quoted column", errors.Clip(it.tail))
				}
				mods = strings.Split(it.tail[1:], ".")
			}
		} else {
			// Peel up to two modifiers off the end; what remains is the column, which may
			// itself contain dots.
			parts := strings.Split(it.text, ".")
			for len(parts) > 1 && len(mods) < 2 && isOrderModifier(parts[len(parts)-1]) {
				mods = append([]string{parts[len(parts)-1]}, mods...)
				parts = parts[:len(parts)-1]
			}
			o.Column = strings.Join(parts, ".")
		}
		if o.Column == "" {
			return nil, errors.WithCode(errors.Invalid, errors.CodeBadOrder, "order: empty column name")
		}
		var dirSet, nullsSet bool
		for _, m := range mods {
			switch strings.ToLower(m) {
			case "asc", "desc":
				if dirSet || nullsSet {
					return nil, errors.WithCode(errors.Invalid, errors.CodeBadOrder, "order on %q: want col.asc|desc[.nullsfirst|nullslast]", errors.Clip(o.Column))
				}
				dirSet = true
				o.Desc = strings.EqualFold(m, "desc")
			case "nullsfirst", "nullslast":
				if nullsSet {
					return nil, errors.WithCode(errors.Invalid, errors.CodeBadOrder, "order on %q: want col.asc|desc[.nullsfirst|nullslast]", errors.Clip(o.Column))
				}
				nullsSet = true
				o.NullsFirst = strings.EqualFold(m, "nullsfirst")
			default:
				return nil, errors.WithCode(errors.Invalid, errors.CodeBadOrder, "order on %q: unknown direction %q (want asc or desc)", errors.Clip(o.Column), errors.Clip(m))
			}
		}
		if !nullsSet {
			o.NullsFirst = !o.Desc // SQLite: NULL is the smallest value
		}
		out = append(out, o)
	}
	return out, nil
}

func isOrderModifier(s string) bool {
	switch strings.ToLower(s) {
	case "asc", "desc", "nullsfirst", "nullslast":
		return true
	}
	return false
}

// ParseSelect parses a select parameter: comma-separated column names, each optionally
// double-quoted. "*" alone means every column (nil).
func ParseSelect(s string) ([]string, error) {
	if s == "*" {
		return nil, nil
	}
	items, err := splitItems(s)
	if err != nil {
		return nil, errors.WithCode(errors.Invalid, errors.CodeBadSelect, "select: %s", err.Error())
	}
	out := make([]string, 0, len(items))
	seen := map[string]bool{}
	for _, it := range items {
		if it.tail != "" {
			return nil, errors.WithCode(errors.Invalid, errors.CodeBadSelect, "select: unexpected %q after a quoted column", errors.Clip(it.tail))
		}
		if it.text == "" {
			return nil, errors.WithCode(errors.Invalid, errors.CodeBadSelect, "select: empty column name")
		}
		if !seen[it.text] {
			seen[it.text] = true
			out = append(out, it.text)
		}
	}
	if len(out) == 0 {
		return nil, errors.WithCode(errors.Invalid, errors.CodeBadSelect, "select: no columns")
	}
	return out, nil
}

// ParseLimit parses a limit parameter: an integer ≥ 1; anything above max, however
// large, is clamped to max.
func ParseLimit(s string, max int) (int, error) {
	n, err := strconv.Atoi(s)
	if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange && !strings.HasPrefix(s, "-") {
		return max, nil
	}
	if err != nil || n < 1 {
		return 0, errors.WithCode(errors.Invalid, errors.CodeBadLimit, "limit must be an integer from 1 to %d", max)
	}
	return min(n, max), nil
}

// ParseQuery parses the query string of a list request: limit, after, order and
// select, and every other parameter as a filter (col=op.value, col=not.op.value) or a
// logical group (or=(…), and=(…), not.or=(…), not.and=(…)), all ANDed into Where.
// Column names are checked against the table later, by Compile.
func ParseQuery(v url.Values) (Query, error) {
	q := Query{Limit: DefaultLimit}
	if s, ok := v[ParamLimit]; ok {
		n, err := ParseLimit(strings.TrimSpace(lastOf(s)), MaxLimit)
		if err != nil {
			return q, err
		}
		q.Limit = n
	}
	q.After = lastOf(v[ParamAfter])
	if s, ok := v[ParamOrder]; ok {
		o, err := ParseOrder(strings.Join(s, ","))
		if err != nil {
			return q, err
		}
		q.Order = o
	}
	if s, ok := v[ParamSelect]; ok {
		sel, err := ParseSelect(lastOf(s))
		if err != nil {
			return q, err
		}
		q.Select = sel
	}
	filters := make(url.Values, len(v))
	for k, vals := range v {
		switch k {
		case ParamLimit, ParamAfter, ParamOrder, ParamSelect:
			continue
		}
		filters[k] = vals
	}
	w, err := parseFilters(filters)
	if err != nil {
		return q, err
	}
	q.Where = w
	return q, nil
}

func lastOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// item is one element of a comma-separated list. A double-quoted element's text is
// unquoted (backslash escapes the next character) and tail holds whatever follows the
// closing quote up to the next comma.
type item struct {
	text   string
	quoted bool
	tail   string
}

type syntaxError string

func (e syntaxError) Error() string { return string(e) }

// splitItems splits s on commas that are not inside double quotes. An empty s is an
// empty list.
func splitItems(s string) ([]item, error) {
	var out []item
	if s == "" {
		return out, nil
	}
	i := 0
	for {
		var it item
		if i < len(s) && s[i] == '"' {
			it.quoted = true
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					b.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '"' {
					closed = true
					i++
					break
				}
				b.WriteByte(c)
				i++
			}
			if !closed {
				return nil, syntaxError("unterminated double quote")
			}
			it.text = b.String()
			j := strings.IndexByte(s[i:], ',')
			if j < 0 {
				it.tail, i = s[i:], len(s)
			} else {
				it.tail, i = s[i:i+j], i+j
			}
		} else {
			j := strings.IndexByte(s[i:], ',')
			if j < 0 {
				it.text, i = s[i:], len(s)
			} else {
				it.text, i = s[i:i+j], i+j
			}
		}
		out = append(out, it)
		if i >= len(s) {
			return out, nil
		}
		i++ // the comma
		if i == len(s) {
			out = append(out, item{}) // a trailing comma: an empty last item
			return out, nil
		}
	}
}

// QuoteListItem quotes v for an in.(…) list or a select/order column, so that
// splitItems returns it unchanged. Clients may use the same rule.
func QuoteListItem(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
	return b.String()
}
