package crud

import (
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/store"
)

// Names in messages go through errors.Clip: a request may carry a table or column
// name of nearly a megabyte, and an error must not echo it back whole.

func unknownTable(name string) error {
	return errors.WithCode(errors.NotFound, errors.CodeUnknownTable, "unknown table %q", errors.Clip(name))
}

func rowNotFound(table string) error {
	return errors.WithCode(errors.NotFound, errors.CodeNotFound, "no such row in table %q", errors.Clip(table))
}

// classify adds to store's classification what only a statement on table can
// mean: a constraint violation is Conflict naming the constraint (its columns without
// the table prefix), a non-integer rowid is wrong_type, and "no such table" for table
// (dropped under the request) is unknown_table. Anything store classified already, or
// that is not SQLite's, passes through.
func classify(op, table string, err error) error {
	if err == nil || errors.KindOf(err) != errors.Internal {
		return err
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	if m := constraintErr(se, table); m != nil {
		return m
	}
	if se.Code()&0xff == sqlite3.SQLITE_MISMATCH {
		// A non-integer for a rowid or INTEGER PRIMARY KEY: the client's mistake.
		return errors.E(errors.Op(op), errors.Invalid, errors.CodeWrongType,
			fmt.Sprintf("table %q: the row key must be an integer", errors.Clip(table)), err)
	}
	if table != "" && store.IsNoSuchTable(err) {
		return errors.E(errors.Op(op), errors.NotFound, errors.CodeUnknownTable, fmt.Sprintf("unknown table %q", errors.Clip(table)), err)
	}
	return err
}

// sqliteMessage is SQLite's own message in a modernc error: "constraint failed: UNIQUE
// constraint failed: t.email (2067)" → "UNIQUE constraint failed: t.email".
func sqliteMessage(se *sqlite.Error) string {
	s := se.Error()
	s = strings.TrimSuffix(s, " (SQLITE_BUSY)")
	if i := strings.LastIndex(s, " ("); i >= 0 && strings.HasSuffix(s, ")") {
		s = s[:i]
	}
	return s
}

// constraintErr classifies a constraint violation, or returns nil.
func constraintErr(se *sqlite.Error, table string) error {
	code := se.Code()
	if code&0xff != sqlite3.SQLITE_CONSTRAINT {
		return nil
	}
	msg := sqliteMessage(se)
	after := func(marker string) string {
		if i := strings.Index(msg, marker); i >= 0 {
			return msg[i+len(marker):]
		}
		return ""
	}
	// columns turns "t.a, t.b" into "a, b" (dropping this table's prefix).
	columns := func(s string) string {
		parts := strings.Split(s, ", ")
		for i, p := range parts {
			parts[i] = strings.TrimPrefix(p, table+".")
		}
		return strings.Join(parts, ", ")
	}
	conflict := func(c errors.Code, format string, args ...any) error {
		return errors.E(errors.Conflict, c, fmt.Sprintf(format, args...), error(se))
	}
	switch code {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return conflict(errors.CodeUniqueViolation, "UNIQUE constraint failed on column %s", columns(after("UNIQUE constraint failed: ")))
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_ROWID:
		cols := columns(after("UNIQUE constraint failed: "))
		if cols == "" {
			cols = "rowid"
		}
		return conflict(errors.CodePrimaryKeyViolation, "PRIMARY KEY constraint failed on column %s: the key is taken", cols)
	case sqlite3.SQLITE_CONSTRAINT_NOTNULL:
		return conflict(errors.CodeNotNullViolation, "NOT NULL constraint failed on column %s", columns(after("NOT NULL constraint failed: ")))
	case sqlite3.SQLITE_CONSTRAINT_CHECK:
		return conflict(errors.CodeCheckViolation, "CHECK constraint failed: %s", after("CHECK constraint failed: "))
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return conflict(errors.CodeForeignKeyViolation, "FOREIGN KEY constraint failed")
	case sqlite3.SQLITE_CONSTRAINT_TRIGGER:
		msg := after("constraint failed: ")
		if capture.IsGuardMessage(msg) {
			// sqlws's own guard (capture.Pause): not the client's fault, and over once
			// capture resumes.
			return errors.E(errors.Unavailable, errors.CodeCapturePaused, msg+" (retry later)", error(se))
		}
		return conflict(errors.CodeTriggerViolation, "refused by a trigger: %s", msg)
	case sqlite3.SQLITE_CONSTRAINT_DATATYPE:
		return errors.E(errors.Invalid, errors.CodeWrongType, after("constraint failed: "), error(se))
	}
	return conflict(errors.CodeConstraintViolation, "constraint failed")
}
