// Package filter is what a filtered subscription receives: given a change of one
// table, whether a subscriber with a where and a select gets it, and as what
// (docs/protocol.md, "Filtered subscriptions"). The rules — an insert when the new row
// matches, a delete when the old row matched, an update moving a row into or out of
// the filter as "moved", only the selected columns in old and new — live here and
// nowhere else; the predicate itself is package query's, so REST and the stream
// agree on every row. It knows nothing of windows, cursors or sockets: fanout
// evaluates each change once per distinct filter, and /api/changes applies the same
// rules to what it reads.
package filter

import (
	"bytes"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/query"
)

// Filter is a compiled where and select over one table. It is immutable and safe for
// concurrent use.
type Filter struct {
	table *capture.Table
	key   string
	where string
	pred  *query.Predicate // nil: every row
	sel   map[string]bool  // nil: every column
	// need are the columns a row image must carry for the filter to mean what it
	// meant when compiled: the predicate's and the selected ones. An image without one
	// comes from a table whose column was since dropped or renamed.
	need         []string
	head         int64 // see Compile
	eqCol, eqKey string
	indexed      bool
	none         bool // see Nothing
}

// Compile compiles where and sel (REST's list grammar; either may be "") against
// table t as it was at the stream's seq head. Errors are bad_filter, bad_select or
// unknown_column, as REST reports them.
//
// A change up to head whose row lacks a column the filter uses predates that
// column (ADD COLUMN): the column reads as NULL there, as it would have in a query
// then. A later one comes from a table that lost the column since: Apply says Stale.
func Compile(t *capture.Table, where, sel string, head int64) (*Filter, error) {
	f := &Filter{table: t, where: where, head: head}
	// The key is the request's text: equal text, one shared evaluation. Two spellings
	// of one filter are evaluated twice, which costs time, never correctness.
	f.key = t.Name + "\x00" + where + "\x00" + sel
	if where != "" {
		e, err := query.ParseWhere(where)
		if err != nil {
			return nil, err
		}
		if f.pred, err = query.CompilePredicate(e, t); err != nil {
			return nil, err
		}
		f.need = append(f.need, f.pred.Columns()...)
		f.eqCol, f.eqKey, f.indexed = f.pred.EqKey()
	}
	if sel != "" {
		cols, err := query.ParseSelect(sel)
		if err != nil {
			return nil, err
		}
		if len(cols) > 0 {
			f.sel = make(map[string]bool, len(cols))
			for _, c := range cols {
				if _, _, err := t.Ref(c); err != nil {
					return nil, err
				}
				f.sel[c] = true
				f.need = append(f.need, c)
			}
		}
	}
	return f, nil
}

// Nothing is a filter over table t that passes no change: a subscription whose
// access rule no row can satisfy (a claim the rule needs is missing). It still checks
// sel, so the client's errors are the same as with rows to read.
func Nothing(t *capture.Table, sel string, head int64) (*Filter, error) {
	f, err := Compile(t, "", sel, head)
	if err != nil {
		return nil, err
	}
	f.none = true
	f.key += "\x00nothing"
	return f, nil
}

// Key identifies the filter: subscriptions whose filters have equal keys receive the
// same records.
func (f *Filter) Key() string { return f.key }

// Table is the table the filter is over.
func (f *Filter) Table() string { return f.table.Name }

// EqIndex is the column and index key every row the filter matches carries
// (query.IndexKey), when the where requires an equality; ok false otherwise.
func (f *Filter) EqIndex() (col, key string, ok bool) { return f.eqCol, f.eqKey, f.indexed }

// IndexKeys are the index keys (query.IndexKey) of f's equality column in c's old and
// new rows, those that have one, without repeats: a filter indexed on that column can
// only match c if one of them is its key. missing reports a row image without the
// column at all: every filter indexed on it must see c, to notice it went stale.
func (f *Filter) IndexKeys(c *Change) (keys []string, missing bool) {
	if !f.indexed {
		return nil, false
	}
	for i := range 2 {
		row, err := c.row(i)
		if err != nil || row == nil {
			continue
		}
		v, present := row[f.eqCol]
		if !present {
			missing = true
			continue
		}
		if k, ok := query.IndexKey(f.table, f.eqCol, v); ok && (len(keys) == 0 || keys[0] != k) {
			keys = append(keys, k)
		}
	}
	return keys, missing
}

// Result is what a filter makes of a change.
type Result uint8

const (
	// Skip: the subscriber does not receive the change.
	Skip Result = iota
	// Deliver: the subscriber receives the record Apply returned.
	Deliver
	// Stale: the change's row lacks a column the filter uses (dropped or renamed
	// since the filter was compiled); the subscription must end with unknown_column
	// rather than silently match nothing.
	Stale
)

// StaleError is the error a subscription whose filter went stale ends with.
func (f *Filter) StaleError() error {
	return errors.WithCode(errors.Invalid, errors.CodeUnknownColumn,
		"a column this subscription's where or select uses is no longer in table %q", errors.Clip(f.table.Name))
}

// Change is one change record, decoded as far as the filters looking at it need and
// no further, once for all of them. Not safe for concurrent use.
type Change struct {
	e      models.Encoded
	parsed bool
	bad    bool
	rec    models.Parts
	rows   [2]map[string]any // old, new
	done   [2]bool
	errs   [2]error
}

// NewChange wraps e (a change record as the fan-out holds it) for filtering.
func NewChange(e models.Encoded) *Change { return &Change{e: e} }

func (c *Change) parse() bool {
	if !c.parsed {
		c.parsed = true
		var err error
		c.rec, err = models.SplitChange(c.e.JSON)
		c.bad = err != nil
	}
	return !c.bad
}

func (c *Change) row(i int) (map[string]any, error) {
	if !c.parse() {
		return nil, errors.E(errors.Internal, "undecodable change record")
	}
	if !c.done[i] {
		c.done[i] = true
		raw := c.rec.Old
		if i == 1 {
			raw = c.rec.New
		}
		if present(raw) {
			c.rows[i], c.errs[i] = capture.DecodeImage(raw)
		}
	}
	return c.rows[i], c.errs[i]
}

func present(raw []byte) bool { return len(raw) > 0 && string(raw) != "null" }

// Apply decides whether a subscriber with f receives c and returns the record it
// receives: c's own bytes when nothing is narrowed, else a record with only the
// selected columns and, for an update crossing the filter, "moved".
func (f *Filter) Apply(c *Change) ([]byte, Result) {
	if f.none || !c.parse() || c.e.Table != f.table.Name {
		return nil, Skip
	}
	var m [2]bool
	var rows [2]map[string]any
	for i := range 2 {
		row, err := c.row(i)
		if err != nil {
			return nil, Skip // an image sqlws wrote and cannot read: nothing to match
		}
		if row == nil {
			continue
		}
		for _, col := range f.need {
			if _, ok := row[col]; !ok && !f.inKey(c, col) && c.e.Seq > f.head {
				return nil, Stale
			}
		}
		rows[i] = row
		m[i] = f.pred == nil || f.pred.Match(f.withKey(c, row))
	}
	r := &c.rec
	switch {
	case r.Op == models.OpInsert && m[1], r.Op == models.OpDelete && m[0]:
		return f.record(c, "", r.Old, r.New), Deliver
	case r.Op != models.OpUpdate:
		return nil, Skip
	case m[0] && m[1]:
		if f.sel != nil && !f.selectedChanged(rows[0], rows[1]) {
			return nil, Skip
		}
		return f.record(c, "", r.Old, r.New), Deliver
	case m[1]:
		return f.record(c, models.MovedIn, nil, r.New), Deliver
	case m[0]:
		return f.record(c, models.MovedOut, r.Old, nil), Deliver
	}
	return nil, Skip
}

// inKey reports whether col is carried by c's key rather than its images: the rowid
// of a table without a declared key.
func (f *Filter) inKey(_ *Change, col string) bool {
	return col == f.table.RowidKey && col != ""
}

// withKey is row with the rowid key added when the table addresses rows by rowid, so
// a where on it matches as REST's does.
func (f *Filter) withKey(c *Change, row map[string]any) map[string]any {
	rk := f.table.RowidKey
	if rk == "" {
		return row
	}
	if _, ok := row[rk]; ok {
		return row
	}
	pk, err := capture.DecodeImage(c.rec.PK)
	if err != nil {
		return row
	}
	out := make(map[string]any, len(row)+1)
	for k, v := range row {
		out[k] = v
	}
	out[rk] = pk[rk]
	return out
}

// selectedChanged reports whether any selected column, or a key column (pk is always
// sent whole), differs between old and new.
func (f *Filter) selectedChanged(old, new map[string]any) bool {
	for col := range f.sel {
		if differ(old[col], new[col]) {
			return true
		}
	}
	for _, col := range f.table.PrimaryKey {
		if differ(old[col], new[col]) {
			return true
		}
	}
	return false
}

// differ compares two decoded values by storage class and value.
func differ(a, b any) bool {
	ab, aok := a.([]byte)
	bb, bok := b.([]byte)
	if aok || bok {
		return aok != bok || !bytes.Equal(ab, bb)
	}
	return a != b
}

// record is the record the subscriber receives: c's own bytes when it is unchanged.
func (f *Filter) record(c *Change, moved string, old, new []byte) []byte {
	r := &c.rec
	if moved == "" && f.sel == nil {
		return c.e.JSON
	}
	keep := func(name string) bool { return f.sel == nil || f.sel[name] }
	var o, n []byte
	if present(old) {
		o = capture.ProjectImage(nil, old, keep)
	}
	if present(new) {
		n = capture.ProjectImage(nil, new, keep)
	}
	return models.AppendMovedChange(make([]byte, 0, len(c.e.JSON)), c.e.Seq, c.e.Table, r.Op, moved, r.PK, o, n, r.TS)
}
