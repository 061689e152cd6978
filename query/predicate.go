package query

import (
	"bytes"
	"math"
	"strconv"
	"strings"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/errors"
)

// Predicate is a filter expression compiled against one table for evaluation in
// memory, over a change's decoded row image (capture.DecodeImage). Match gives exactly
// the answer SQLite gives for the SQL that Compile produces for the same expression,
// over a row holding the same values: the same conversions by column affinity, the
// same storage-class order and exact INTEGER/REAL comparison, the column's collation,
// SQLite's LIKE, and SQL's three-valued logic. TestAgreement checks this against
// SQLite over random tables, rows and filters.
//
// A Predicate is immutable and safe for concurrent use.
type Predicate struct {
	root    pnode
	columns []string
	eqCol   string
	eqKey   string
	eqOK    bool
}

// pnode is a compiled Expr node.
type pnode struct {
	kind ExprKind
	kids []pnode
	leaf *pleaf
}

// pleaf is a compiled filter.
type pleaf struct {
	col     string // the member of the row image (the column's name, or the rowid's)
	op      Op
	aff     capture.Affinity
	coll    collation
	vals    []any               // comparison operands, converted as SQLite converts the bound value
	inKeys  map[string]struct{} // a long in-list: the index keys (valueKey) of vals
	pattern []byte              // like
	isNull  bool                // is: null (true) or notnull
}

// inScan is the longest in-list Match compares value by value; a longer one is
// looked up by index key.
const inScan = 8

// collation is one of SQLite's built-in collating sequences.
type collation uint8

const (
	collBinary collation = iota
	collNocase
	collRtrim
)

// tri is SQL's three-valued truth.
type tri uint8

const (
	triFalse tri = iota
	triTrue
	triNull
)

// CompilePredicate compiles e against table t: every column is checked (an unknown
// one is the unknown_column error capture.Table.Ref gives), and each filter value is
// prepared as SQLite prepares the bound parameter Compile's SQL binds (BindText, then
// the comparison affinity of the column). A comparison on a column whose collating
// sequence the evaluator cannot reproduce (one an application defines, or a table
// whose schema text could not be read) is refused with bad_filter rather than
// evaluated differently from SQLite.
func CompilePredicate(e Expr, t *capture.Table) (*Predicate, error) {
	p := &Predicate{}
	seen := map[string]bool{}
	root, err := compileNode(e, t, p, seen, 0)
	if err != nil {
		return nil, err
	}
	p.root = root
	p.findEq(t)
	return p, nil
}

func compileNode(e Expr, t *capture.Table, p *Predicate, seen map[string]bool, depth int) (pnode, error) {
	if depth > maxGroupDepth*2+2 {
		return pnode{}, badFilter("filter groups nest too deeply")
	}
	n := pnode{kind: e.Kind}
	switch e.Kind {
	case ExprFilter:
		l, err := compileLeaf(e.Filter, t)
		if err != nil {
			return n, err
		}
		if !seen[l.col] {
			seen[l.col] = true
			p.columns = append(p.columns, l.col)
		}
		n.leaf = l
		return n, nil
	case ExprNot:
		if len(e.Children) != 1 {
			return n, badFilter("not takes one condition")
		}
	case ExprAnd, ExprOr:
	default:
		return n, badFilter("unknown filter expression kind %d", e.Kind)
	}
	n.kids = make([]pnode, 0, len(e.Children))
	for _, c := range e.Children {
		k, err := compileNode(c, t, p, seen, depth+1)
		if err != nil {
			return n, err
		}
		n.kids = append(n.kids, k)
	}
	return n, nil
}

func compileLeaf(f Filter, t *capture.Table) (*pleaf, error) {
	_, c, err := t.Ref(f.Column)
	if err != nil {
		return nil, err
	}
	l := &pleaf{col: f.Column, op: f.Op, aff: t.Affinity(c)}
	if c != nil {
		l.col = c.Name
	}
	one := func() error {
		if len(f.Values) != 1 {
			return badFilter("filter on %q: %s takes one value", errors.Clip(f.Column), f.Op)
		}
		return nil
	}
	switch f.Op {
	case OpEq, OpNeq, OpLt, OpLte, OpGt, OpGte, OpIn:
		if f.Op != OpIn {
			if err := one(); err != nil {
				return nil, err
			}
		}
		coll, err := columnCollation(t, f.Column, c == nil)
		if err != nil {
			return nil, err
		}
		l.coll = coll
		l.vals = make([]any, len(f.Values))
		for i, v := range f.Values {
			l.vals[i] = applyAffinity(l.aff, BindText(t, c, v))
		}
		if f.Op == OpIn && len(l.vals) > inScan {
			// Equal values have equal keys and unequal ones different keys
			// (TestAgreement checks it), so a long list is one map lookup.
			l.inKeys = make(map[string]struct{}, len(l.vals))
			for _, v := range l.vals {
				if k, ok := valueKey(v, l.coll); ok {
					l.inKeys[k] = struct{}{}
				}
			}
		}
	case OpLike:
		if err := one(); err != nil {
			return nil, err
		}
		l.pattern = []byte(f.Values[0])
	case OpIs:
		switch {
		case len(f.Values) == 1 && f.Values[0] == IsNull:
			l.isNull = true
		case len(f.Values) == 1 && f.Values[0] == IsNotNull:
		default:
			return nil, badFilter("filter on %q: is takes null or notnull", errors.Clip(f.Column))
		}
	default:
		return nil, badFilter("filter on %q: unknown operator %q", errors.Clip(f.Column), errors.Clip(string(f.Op)))
	}
	return l, nil
}

// columnCollation is the collating sequence comparisons on a column use: its declared
// one, BINARY if none (and for the rowid).
func columnCollation(t *capture.Table, name string, rowid bool) (collation, error) {
	if rowid {
		return collBinary, nil
	}
	coll, ok := t.Collation(name)
	if !ok {
		return 0, badFilter("filter on %q: the collation of the column is not known, so a comparison cannot be evaluated on the stream", errors.Clip(name))
	}
	switch coll {
	case "BINARY":
		return collBinary, nil
	case "NOCASE":
		return collNocase, nil
	case "RTRIM":
		return collRtrim, nil
	}
	return 0, badFilter("filter on %q: the column's collation %s is not built into SQLite, so a comparison cannot be evaluated on the stream", errors.Clip(name), errors.Clip(coll))
}

// applyAffinity converts a comparison operand as SQLite does when it is compared with
// a column of affinity aff (https://sqlite.org/datatype3.html §4.2): INTEGER, REAL
// and NUMERIC columns turn well-formed numeric text into a number, TEXT columns turn
// numbers into text, BLOB (and no-type) columns convert nothing.
func applyAffinity(aff capture.Affinity, v any) any {
	switch aff {
	case capture.AffInteger, capture.AffReal, capture.AffNumeric:
		if s, ok := v.(string); ok {
			return numericAffinity(s)
		}
	case capture.AffText:
		switch n := v.(type) {
		case int64:
			return strconv.FormatInt(n, 10)
		case float64:
			return realText(n)
		}
	}
	return v
}

// rowValue is a decoded image value as the table holds it. An image writes a whole
// REAL from 10^15 up without a decimal point (capture.DecodeImage), so it decodes as
// an integer; a column of REAL affinity holds no integers, so there it is a REAL.
func rowValue(aff capture.Affinity, v any) any {
	if aff == capture.AffReal {
		if n, ok := v.(int64); ok {
			return float64(n)
		}
	}
	return v
}

// Columns lists the columns the predicate reads, each once, in the order the
// expression names them (a table without a declared key: its rowid by its REST
// name). A schema change that drops or renames one of them changes what the filter
// means.
func (p *Predicate) Columns() []string { return append([]string(nil), p.columns...) }

// Match reports whether the row satisfies the predicate: whether SQLite would select
// it with the compiled SQL. row maps column names to values as DecodeImage returns
// them (nil, int64, float64, string, []byte); a column missing from row is NULL.
func (p *Predicate) Match(row map[string]any) bool {
	return p.root.eval(row) == triTrue
}

func (n *pnode) eval(row map[string]any) tri {
	switch n.kind {
	case ExprFilter:
		return n.leaf.eval(row)
	case ExprNot:
		switch n.kids[0].eval(row) {
		case triTrue:
			return triFalse
		case triFalse:
			return triTrue
		}
		return triNull
	case ExprAnd:
		r := triTrue
		for i := range n.kids {
			switch n.kids[i].eval(row) {
			case triFalse:
				return triFalse
			case triNull:
				r = triNull
			}
		}
		return r
	case ExprOr:
		r := triFalse
		for i := range n.kids {
			switch n.kids[i].eval(row) {
			case triTrue:
				return triTrue
			case triNull:
				r = triNull
			}
		}
		return r
	}
	return triNull
}

func truth(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

func (l *pleaf) eval(row map[string]any) tri {
	v := rowValue(l.aff, row[l.col])
	switch l.op {
	case OpIs:
		return truth((v == nil) == l.isNull)
	case OpLike:
		if v == nil {
			return triNull
		}
		if _, blob := v.([]byte); blob {
			return triFalse // SQLite 3.54's like() is false, not NULL, for a BLOB
		}
		var buf [32]byte
		return truth(like(l.pattern, likeText(buf[:0], v)))
	case OpIn:
		if len(l.vals) == 0 {
			return triFalse // SQLite: x IN () is false, even for NULL
		}
		if v == nil {
			return triNull
		}
		v = applyAffinity(l.aff, v)
		if l.inKeys != nil {
			k, _ := valueKey(v, l.coll)
			_, in := l.inKeys[k]
			return truth(in)
		}
		for _, o := range l.vals {
			if compare(v, o, l.coll) == 0 {
				return triTrue
			}
		}
		return triFalse
	}
	if v == nil {
		return triNull
	}
	c := compare(applyAffinity(l.aff, v), l.vals[0], l.coll)
	switch l.op {
	case OpEq:
		return truth(c == 0)
	case OpNeq:
		return truth(c != 0)
	case OpLt:
		return truth(c < 0)
	case OpLte:
		return truth(c <= 0)
	case OpGt:
		return truth(c > 0)
	case OpGte:
		return truth(c >= 0)
	}
	return triNull
}

// likeText is the text LIKE reads from a value (sqlite3_value_text): an integer in
// decimal, a REAL as SQLite renders it, TEXT as it is. (A BLOB never gets here:
// like() refuses it.)
func likeText(dst []byte, v any) []byte {
	switch v := v.(type) {
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case float64:
		return appendRealText(dst, v)
	case string:
		return append(dst, v...)
	case []byte:
		return v
	}
	return dst
}

// class is a value's storage class in SQLite's sort order: NULL < numbers < TEXT <
// BLOB.
func class(v any) int {
	switch v.(type) {
	case nil:
		return 0
	case int64, float64:
		return 1
	case string:
		return 2
	}
	return 3
}

// compare is sqlite3MemCompare of two non-NULL values already converted by affinity:
// storage classes in order, numbers by value (an INTEGER and a REAL exactly, at any
// magnitude), TEXT by the collation, BLOBs by bytes.
func compare(a, b any, coll collation) int {
	ca, cb := class(a), class(b)
	if ca != cb {
		if ca < cb {
			return -1
		}
		return 1
	}
	switch ca {
	case 1:
		return compareNumbers(a, b)
	case 2:
		return compareText(a.(string), b.(string), coll)
	case 3:
		return bytes.Compare(a.([]byte), b.([]byte))
	}
	return 0
}

func compareNumbers(a, b any) int {
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			return cmp3(x < y, x > y)
		case float64:
			return intFloatCompare(x, y)
		}
	case float64:
		switch y := b.(type) {
		case int64:
			return -intFloatCompare(y, x)
		case float64:
			return cmp3(x < y, x > y)
		}
	}
	return 0
}

func cmp3(lt, gt bool) int {
	if lt {
		return -1
	}
	if gt {
		return 1
	}
	return 0
}

// intFloatCompare is sqlite3IntFloatCompare: i against r exactly.
func intFloatCompare(i int64, r float64) int {
	if math.IsNaN(r) {
		return 1
	}
	if r < -9223372036854775808.0 {
		return 1
	}
	if r >= 9223372036854775808.0 {
		return -1
	}
	y := int64(r)
	if i < y {
		return -1
	}
	if i > y {
		return 1
	}
	s := float64(i)
	return cmp3(s < r, s > r)
}

// compareText compares under one of SQLite's built-in collations: BINARY is memcmp,
// NOCASE folds ASCII letters to lower case (only ASCII), RTRIM ignores trailing
// spaces.
func compareText(a, b string, coll collation) int {
	switch coll {
	case collNocase:
		n := min(len(a), len(b))
		for i := 0; i < n; i++ {
			x, y := asciiLowerByte(a[i]), asciiLowerByte(b[i])
			if x != y {
				return int(x) - int(y)
			}
		}
		return len(a) - len(b)
	case collRtrim:
		a, b = strings.TrimRight(a, " "), strings.TrimRight(b, " ")
	}
	return strings.Compare(a, b)
}

func asciiLowerByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// EqKey reports a column every matching row must hold a given value in: ok when the
// expression is, or has as a top-level AND conjunct, a plain col=eq.v filter, with key
// the index key (IndexKey) of v. Every row p matches then has IndexKey(t, col,
// row[col]) == key, so subscriptions can be found by a map lookup on a change's value
// instead of evaluating each one.
func (p *Predicate) EqKey() (col, key string, ok bool) { return p.eqCol, p.eqKey, p.eqOK }

func (p *Predicate) findEq(t *capture.Table) {
	// The conjuncts of the top level, and=(…) groups in it flattened.
	var cands []pnode
	var add func(n pnode)
	add = func(n pnode) {
		if n.kind == ExprAnd {
			for _, k := range n.kids {
				add(k)
			}
			return
		}
		cands = append(cands, n)
	}
	add(p.root)
	for _, n := range cands {
		if n.kind != ExprFilter || n.leaf.op != OpEq {
			continue
		}
		if k, ok := valueKey(n.leaf.vals[0], n.leaf.coll); ok {
			p.eqCol, p.eqKey, p.eqOK = n.leaf.col, k, true
			return
		}
	}
}

// IndexKey is the equality key of value v of column col of t: two values SQLite
// finds equal in that column (col = v under its affinity and collation) have the same
// key, and values it finds unequal different ones. An INTEGER and a REAL of the same
// value share a key, as do NOCASE texts that differ in ASCII case only, and RTRIM
// texts that differ in trailing spaces only. NULL (equal to nothing) and an unknown
// column have none (ok false).
func IndexKey(t *capture.Table, col string, v any) (string, bool) {
	_, c, err := t.Ref(col)
	if err != nil {
		return "", false
	}
	coll, err := columnCollation(t, col, c == nil)
	if err != nil {
		return "", false
	}
	aff := t.Affinity(c)
	return valueKey(applyAffinity(aff, rowValue(aff, v)), coll)
}

// valueKey is the key of a value already converted by the column's affinity.
func valueKey(v any, coll collation) (string, bool) {
	switch v := v.(type) {
	case int64:
		return "n" + strconv.FormatInt(v, 10), true
	case float64:
		if v == math.Trunc(v) && v >= -9223372036854775808.0 && v < 9223372036854775808.0 {
			return "n" + strconv.FormatInt(int64(v), 10), true
		}
		return "r" + strconv.FormatFloat(v, 'g', -1, 64), true
	case string:
		switch coll {
		case collNocase:
			b := []byte(v)
			for i, c := range b {
				b[i] = asciiLowerByte(c)
			}
			return "t" + string(b), true
		case collRtrim:
			return "t" + strings.TrimRight(v, " "), true
		}
		return "t" + v, true
	case []byte:
		return "b" + string(v), true
	}
	return "", false
}
