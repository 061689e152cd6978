package crud

import (
	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/query"
)

// Rule is a condition on the rows a request may touch: Where (empty: every row), or
// no row at all when Nothing is set. It is compiled like a list query's filters —
// columns checked and quoted, every value bound — and ANDed into the statement's
// own WHERE, so SQLite, not Go, decides which rows meet it, under the same affinity
// and collation rules as a client's own filters.
type Rule struct {
	Where   query.Expr
	Nothing bool
}

// Guard restricts what one request may read and write (package rules decides it
// from the request's token). The zero Guard restricts nothing.
type Guard struct {
	// Read limits the rows a request sees: lists and gets return only these, a row
	// outside it is "not found", and a write answers such a row as null.
	Read Rule
	// Write limits the rows a request may change: an insert's new row, an update's
	// old and new rows and a delete's old row must meet it, or the write is
	// forbidden and rolled back.
	Write Rule
}

// Guarded is the CRUD layer under one Guard. Its methods are those of DB.
type Guarded struct {
	d *DB
	g Guard
}

// With returns d's reads and writes restricted by g.
func (d *DB) With(g Guard) Guarded { return Guarded{d: d, g: g} }

// cond is r compiled against table e: a condition and the values it binds; "" when
// r allows every row. A rule that cannot be compiled (it names a column the table
// does not have) is the operator's mistake, not the client's: it is an internal
// error, logged, and the request is refused rather than run without it.
func (r Rule) cond(e *capture.Table) (string, []any, error) {
	if r.Nothing {
		return "0", nil, nil
	}
	if r.Where.IsEmpty() {
		return "", nil, nil
	}
	cond, args, err := query.WhereSQL(r.Where, e)
	if err != nil {
		return "", nil, errors.E(errors.Internal, errors.Op("apply access rule"), err)
	}
	return "(" + cond + ")", args, nil
}

// forbidden is the error of a write the write rule does not allow.
func forbidden(table, what string) error {
	return errors.WithCode(errors.Forbidden, errors.CodeForbidden, "the access rules of table %q do not allow %s", errors.Clip(table), what)
}

// truth is cond as a 0/1 column: NULL (a comparison with NULL) counts as false, as
// it does in a WHERE clause.
func truth(cond string) string {
	if cond == "" {
		return "1"
	}
	return "CASE WHEN " + cond + " THEN 1 ELSE 0 END"
}
