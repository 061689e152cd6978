// Package query is REST's filter language: what a list request asks for — filters,
// order, columns, page size and cursor — as a small syntax tree (Query), parsed from a
// URL query string (ParseQuery) and compiled to SQL against a table's schema
// (Compile). The tree knows nothing of SQL: the compiler is one reading of it, and an
// evaluator over a change's row image can be another.
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

// Order is one ORDER BY term. NullsFirst is SQLite's default (true ascending, false
// descending) unless the term says nullsfirst or nullslast.
type Order struct {
	Column     string
	Desc       bool
	NullsFirst bool
}

// Query is a parsed list request.
type Query struct {
	Filters []Filter // ANDed
	Order   []Order  // then the key columns, for a stable order
	Select  []string // nil: every column
	Limit   int      // 1..MaxLimit
	After   string   // the opaque cursor of the previous page's next, "" for the first page
}
