package capture

import (
	"strings"

	"github.com/sqlws/sqlws/models"
)

// Affinity is SQLite's column type affinity (https://sqlite.org/datatype3.html §3):
// what a column converts values to when they are stored or compared. Capture tests a
// value's storage class in the order the affinity makes likely, REST binds text from
// URLs by it, and the OpenAPI document describes columns by it.
type Affinity uint8

// The five affinities.
const (
	AffBlob    Affinity = iota // BLOB, no declared type, or ANY in a STRICT table: values are stored as given
	AffInteger                 // the declared type contains INT
	AffText                    // CHAR, CLOB or TEXT
	AffReal                    // REAL, FLOA or DOUB
	AffNumeric                 // anything else
)

// ColumnAffinity applies SQLite's rules (§3.1) to a column of a table that is STRICT
// or not. A nil column is the rowid.
func ColumnAffinity(c *models.Column, strict bool) Affinity {
	if c == nil {
		return AffInteger
	}
	t := strings.ToUpper(c.Type)
	switch {
	case strict && t == "ANY":
		return AffBlob
	case strings.Contains(t, "INT"):
		return AffInteger
	case strings.Contains(t, "CHAR"), strings.Contains(t, "CLOB"), strings.Contains(t, "TEXT"):
		return AffText
	case strings.Contains(t, "BLOB"), t == "":
		return AffBlob
	case strings.Contains(t, "REAL"), strings.Contains(t, "FLOA"), strings.Contains(t, "DOUB"):
		return AffReal
	}
	return AffNumeric
}

// Affinity is the affinity of column c of t (nil: the rowid).
func (t *Table) Affinity(c *models.Column) Affinity { return ColumnAffinity(c, t.Strict) }
