// Package query is the filter language REST and the stream share: what a list request
// asks for — filters and logical groups, order, columns, page size and cursor — as a
// small syntax tree (Query, Expr), parsed from a URL query string (ParseQuery) or a
// subscription's where (ParseWhere), and compiled against a table's schema two ways:
// to SQL (Compile, WhereSQL), and to a Predicate that evaluates a change's decoded row
// image in memory with exactly SQLite's answer (CompilePredicate; TestAgreement runs
// both over random tables, rows and filters). EqKey and IndexKey let many equality
// filters be found by lookup instead of evaluation.
package query

// List query parameters (PostgREST style). Every other query parameter is a filter on
// the column it names, so these four names cannot be filtered on.
const (
	ParamLimit  = "limit"
	ParamAfter  = "after"
	ParamOrder  = "order"
	ParamSelect = "select"
)

// Page size bounds of a list query. A limit above MaxLimit is clamped to it.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
	// maxInValues bounds an in.(…) list.
	maxInValues = 1000
	// maxFilters bounds the filters of one request: their conditions are ANDed, and
	// SQLite refuses an expression nested 1,000 deep.
	maxFilters = 100
	// maxFilterValues bounds the values all filters of one request bind together,
	// keeping a query far below SQLite's limit on bound parameters (32,766).
	maxFilterValues = 10_000
	// maxOrderColumns bounds order: a page cursor binds each sort column up to once
	// per sort column.
	maxOrderColumns = 32
	// maxGroupDepth bounds how deeply logical groups nest (or=(and(or(…)))): each
	// level is a recursion in the parser, the compiler and the evaluator.
	maxGroupDepth = 10
	// maxLikePattern is SQLite's default bound on a LIKE pattern
	// (SQLITE_MAX_LIKE_PATTERN_LENGTH): a longer one is refused here, as a bad filter,
	// rather than fail inside SQLite, where REST would see an internal error and the
	// stream's evaluator an answer SQLite never gives.
	maxLikePattern = 50_000
)

// Logical group parameters (PostgREST style): or=(a.eq.1,b.lt.2), and=(…), and
// their negations not.or=(…), not.and=(…). A column named like one of these can only
// be filtered inside a group (or=(or.eq.1)).
const (
	ParamOr     = "or"
	ParamAnd    = "and"
	ParamNotOr  = "not.or"
	ParamNotAnd = "not.and"
)

// Op is a filter operator, as a URL spells it.
type Op string

// Filter operators.
const (
	OpEq   Op = "eq"
	OpNeq  Op = "neq"
	OpLt   Op = "lt"
	OpLte  Op = "lte"
	OpGt   Op = "gt"
	OpGte  Op = "gte"
	OpLike Op = "like"
	OpIn   Op = "in"
	OpIs   Op = "is"
)

// The values of an is filter.
const (
	IsNull    = "null"
	IsNotNull = "notnull"
)

// Filter is one condition of a list query: Column Op Values. Values holds one value for
// the comparison operators (a LIKE pattern, with % and _ as wildcards, for like), the
// (possibly empty) list for in, and IsNull or IsNotNull for is. Values are text; the
// column's affinity converts them when compared, as SQLite does.
type Filter struct {
	Column string
	Op     Op
	Values []string
}

// ExprKind says what an Expr node is.
type ExprKind uint8

// The kinds of Expr node. The zero Expr is an And without children: no condition,
// which every row satisfies.
const (
	ExprAnd    ExprKind = iota // true when every child is true (SQL AND over Children)
	ExprOr                     // true when some child is true (SQL OR over Children)
	ExprNot                    // SQL NOT of its only child
	ExprFilter                 // the leaf condition Filter
)

// Expr is a filter expression: a tree of AND, OR and NOT over Filters, with SQL's
// three-valued logic (a comparison with NULL is unknown, NOT unknown is unknown, and a
// row matches only when the whole expression is true). It is what a where string
// (ParseWhere) or a list request's filters (ParseQuery) mean, and what both the SQL
// compiler (Compile) and the in-memory evaluator (CompilePredicate) read.
type Expr struct {
	Kind     ExprKind
	Filter   Filter // ExprFilter only
	Children []Expr // ExprAnd and ExprOr: the operands, ExprNot: exactly one
}

// Leaf is the Expr of one filter.
func Leaf(f Filter) Expr { return Expr{Kind: ExprFilter, Filter: f} }

// And is the conjunction of es (true when es is empty).
func And(es ...Expr) Expr { return Expr{Kind: ExprAnd, Children: es} }

// Or is the disjunction of es.
func Or(es ...Expr) Expr { return Expr{Kind: ExprOr, Children: es} }

// Not is the negation of e.
func Not(e Expr) Expr { return Expr{Kind: ExprNot, Children: []Expr{e}} }

// IsEmpty reports whether e is no condition at all (an And without children), which
// every row satisfies.
func (e Expr) IsEmpty() bool { return e.Kind == ExprAnd && len(e.Children) == 0 }

// Order is one ORDER BY term. NullsFirst is SQLite's default (true ascending, false
// descending) unless the term says nullsfirst or nullslast.
type Order struct {
	Column     string
	Desc       bool
	NullsFirst bool
}

// Query is a parsed list request.
type Query struct {
	Where   Expr     // the filters, groups included (ParseQuery fills this)
	Filters []Filter // more filters, ANDed with Where (for queries built in code)
	Order   []Order  // then the key columns, for a stable order
	Select  []string // nil: every column
	Limit   int      // 1..MaxLimit
	After   string   // the opaque cursor of the previous page's next, "" for the first page
}
