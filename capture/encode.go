package capture

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sqlws/sqlws/models"
)

// sqlws's private value format is how row images travel from SQLite to the server:
// SQL expressions (this file) encode each value inside SQLite, in the capture
// triggers and in REST reads alike, and the server decodes them (decode.go) before
// anything leaves it. The expressions use only SQL that SQLite 3.40 has (the
// triggers must run in every SQLite that writes to a served database, the Debian
// sqlite3 3.40 CLI included): json_object fails on a BLOB, and 3.40 prints REALs with
// 15 digits and infinity as the invalid token Inf, so every value goes through
// valueExpr.

// valueExpr encodes column reference ref losslessly as a JSON value: INTEGER and TEXT
// as json_object writes them, REAL exactly (realExpr), infinities and BLOBs as tagged
// objects. NULL is null. Readers pass images through AppendRowJSON.
//
// It tests the storage classes in the order aff makes likely (the class the column's
// affinity stores first): every test is a string comparison each captured row pays.
// Tagged values are built as JSON text and parsed once by json(), not from nested
// json_object calls: each function call takes its own registers, and a trigger's
// registers are allocated and released for every row it captures, taken branch or
// not. Both raised the throughput of a writer whose rows are captured (measured by
// BenchmarkCapture: rows/s with capture ÷ without).
func valueExpr(ref string, aff Affinity) string {
	var b strings.Builder
	b.WriteString("CASE typeof(" + ref + ")")
	for _, class := range classOrder(aff) {
		b.WriteString(" WHEN '" + class + "' THEN ")
		switch class {
		case "integer":
			b.WriteString(ref)
		case "text":
			b.WriteString(textExpr(ref))
		case "real":
			b.WriteString(realExpr(ref))
		case "blob":
			b.WriteString("json(" + blobText(ref) + ")")
		}
	}
	b.WriteString(" ELSE " + ref + " END") // NULL
	return b.String()
}

// classOrder is the order in which valueExpr tests the storage classes of a column
// with affinity aff (https://sqlite.org/datatype3.html): TEXT affinity stores numbers
// as text, REAL affinity integers as REAL.
func classOrder(aff Affinity) []string {
	switch aff {
	case AffText:
		return []string{"text", "blob", "integer", "real"}
	case AffReal:
		return []string{"real", "text", "integer", "blob"}
	}
	return []string{"integer", "text", "real", "blob"}
}

// realExpr is REAL ref as an exact JSON value: ref itself where SQLite's own rendering
// is exact (json_object writes it with 15 significant digits), else JSON text.
func realExpr(ref string) string {
	return `CASE WHEN ` + realPlain(ref) + ` THEN ` + ref + ` ELSE json(` + realTagged(ref) + `) END`
}

// realText is realExpr as JSON text, for building objects by concatenation (CAST AS
// TEXT writes the same 15 digits as json_object).
func realText(ref string) string {
	return `CASE WHEN ` + realPlain(ref) + ` THEN CAST(` + ref + ` AS TEXT) ELSE ` + realTagged(ref) + ` END`
}

// realPlain is true when SQLite's own rendering of REAL ref (15 significant digits) is
// exact without checking it: a whole number below 10^15, such as the 7.0 a REAL
// column makes of 7, which keeps its decimal point. Any other REAL goes through
// realTagged. A check that the 15 digits read back as the same double would be wrong:
// SQLite before 3.43 also reads decimals inexactly, and a value one unit off could
// pass it (seen at magnitudes of 1e±33 and beyond).
func realPlain(ref string) string {
	return `(abs(` + ref + `) < 1e15 AND ` + ref + ` = CAST(` + ref + ` AS INTEGER))`
}

// realTagged is SQL for the JSON text of a REAL ref: {"$ldexp":[y,k]} with y printed
// to 17 significant digits, which AppendRowJSON turns into the exact JSON
// number y·2^k, written as the shortest decimal that reads back as the same double
// (0.1, not 0.10000000000000001). Infinities get their own tag.
//
// SQLite before 3.43 prints doubles with long-double arithmetic that is exact only for
// moderate magnitudes (about 1e±100); beyond 2^±300 the trigger scales the value by an
// exact power of two first (k ≠ 0).
func realTagged(ref string) string {
	ldexp := func(scaled string, k int) string {
		return fmt.Sprintf(`'{"$ldexp":['||printf('%%!.17g',%s)||',%d]}'`, scaled, k)
	}
	return `CASE` +
		` WHEN ` + ref + ` = 9e999 THEN '{"$real":"Infinity"}'` +
		` WHEN ` + ref + ` = -9e999 THEN '{"$real":"-Infinity"}'` +
		` WHEN abs(` + ref + `)` + pow2(-600) + ` >= 1 THEN ` + ldexp(ref+pow2(-700), 700) +
		` WHEN abs(` + ref + `)` + pow2(-300) + ` >= 1 THEN ` + ldexp(ref+pow2(-300), 300) +
		` WHEN abs(` + ref + `)` + pow2(600) + ` <= 1 THEN ` + ldexp(ref+pow2(750), -750) +
		` WHEN abs(` + ref + `)` + pow2(300) + ` <= 1 THEN ` + ldexp(ref+pow2(300), -300) +
		` ELSE ` + ldexp(ref, 0) + ` END`
}

// blobText is SQL for the JSON text of BLOB ref: hex digits need no escaping.
func blobText(ref string) string { return `'{"$blob":"'||hex(` + ref + `)||'"}'` }

// textExpr is a TEXT reference without its JSON subtype. A value written as json(…)
// keeps that subtype in NEW while the trigger runs, and json_object would embed it as
// JSON instead of the string the table holds (and that later images, read from disk,
// show). Concatenation makes a new value without the subtype.
func textExpr(ref string) string { return `''||` + ref }

// pow2 is SQL that multiplies the preceding expression by 2^k exactly: a chain of
// multiplications or divisions by integer powers of two, each exact in binary floating
// point. Decimal literals are avoided because old SQLite parses them inexactly.
func pow2(k int) string {
	op := "*"
	if k < 0 {
		op, k = "/", -k
	}
	var b strings.Builder
	for ; k >= 60; k -= 60 {
		b.WriteString(op + "1152921504606846976")
	}
	if k > 0 {
		fmt.Fprintf(&b, "%s%d", op, int64(1)<<k)
	}
	return b.String()
}

// valueKind is what a column can hold, as far as the capture triggers care.
type valueKind uint8

const (
	kindAny     valueKind = iota // any storage class: the triggers dispatch on typeof
	kindInteger                  // INTEGER or NULL: written as it is
	kindText                     // TEXT or NULL: written as it is, minus a JSON subtype
)

// valueKind reports what column col can hold: the rowid alias only integers, and
// INT/INTEGER and TEXT columns of a STRICT table only that type (or NULL), unless
// generated. The triggers skip valueExpr's type dispatch for those, which makes the
// trigger program smaller and every captured write cheaper.
func (t *Table) valueKind(col string) valueKind {
	if col == t.aliasCol && col != "" {
		return kindInteger
	}
	if !t.Strict {
		return kindAny
	}
	c := t.Column(col)
	if c == nil || c.Generated {
		return kindAny // SQLite does not type-check generated columns, even in STRICT tables
	}
	switch strings.ToUpper(c.Type) {
	case "INT", "INTEGER":
		return kindInteger
	case "TEXT":
		return kindText
	}
	return kindAny
}

// maxObjectPairs is the most key/value pairs one json_object call may take: SQLite
// before 3.48 allows at most 127 function arguments, and a trigger that breaks the
// limit makes the whole schema unreadable to those versions.
const maxObjectPairs = 63

// imageCol is one member of a row image: its key, the SQL that reads it, what the
// column can hold (see Table.valueKind) and its affinity.
type imageCol struct {
	key, ref string
	kind     valueKind
	aff      Affinity
}

// objectExpr is SQL for a JSON object of cols: one json_object call when it fits,
// else text concatenation, which has no such limit.
func objectExpr(cols []imageCol) string {
	var b strings.Builder
	if len(cols) <= maxObjectPairs {
		b.WriteString("json_object(")
		for i, c := range cols {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(QuoteLiteral(c.key))
			b.WriteString(",")
			switch c.kind {
			case kindInteger:
				b.WriteString(c.ref)
			case kindText:
				b.WriteString(textExpr(c.ref))
			default:
				b.WriteString(valueExpr(c.ref, c.aff))
			}
		}
		b.WriteString(")")
		return b.String()
	}
	b.WriteString("('{'")
	for i, c := range cols {
		sep := ","
		if i == 0 {
			sep = ""
		}
		b.WriteString("||")
		b.WriteString(QuoteLiteral(sep + string(models.AppendJSONString(nil, c.key)) + ":"))
		b.WriteString("||")
		switch c.kind {
		case kindInteger:
			b.WriteString("json_quote(" + c.ref + ")") // 'null' for NULL, unlike CAST
		case kindText:
			b.WriteString("json_quote(" + textExpr(c.ref) + ")")
		default:
			b.WriteString(valueTextExpr(c.ref))
		}
	}
	b.WriteString("||'}')")
	return b.String()
}

// valueTextExpr is valueExpr as JSON text, for building objects by concatenation.
func valueTextExpr(ref string) string {
	return `CASE typeof(` + ref + `) WHEN 'integer' THEN CAST(` + ref + ` AS TEXT)` +
		` WHEN 'text' THEN json_quote(` + textExpr(ref) + `) WHEN 'null' THEN 'null'` +
		` WHEN 'real' THEN ` + realText(ref) + ` ELSE ` + blobText(ref) + ` END`
}

// rowExpr is a JSON object of every column of the row that alias (NEW or OLD) names.
// A table without a declared key has its rowid first, as REST rows do: it is the row's
// key, and an update may change it.
func rowExpr(t *Table, alias string) string {
	var cols []imageCol
	if len(t.PrimaryKey) == 0 {
		cols = append(cols, imageCol{t.RowidName, alias + "." + t.RowidName, kindInteger, AffInteger})
	}
	for i := range t.Columns {
		c := &t.Columns[i]
		cols = append(cols, imageCol{c.Name, alias + "." + QuoteIdent(c.Name), t.valueKind(c.Name), ColumnAffinity(c, t.Strict)})
	}
	return objectExpr(cols)
}

// keyExpr is what the triggers store as a change's key: a constant JSON array of the
// positions of the key columns among the row image's members (rowExpr's order), e.g.
// [0]. The reader builds the key object from the image (keyFromImage), which holds
// every key column, so the trigger does not encode the key values a second time:
// that was a fifth of capture's cost per written row. Each row carries the positions
// for the image it was written with, so schema changes cannot mismatch them. Keys of
// changes written before this format are JSON objects and are read as they are.
func keyExpr(t *Table) string {
	var pos []int
	if len(t.PrimaryKey) == 0 {
		pos = []int{0} // the rowid comes first in rowExpr
	}
	for _, k := range t.PrimaryKey {
		for i, c := range t.Columns {
			if c.Name == k {
				pos = append(pos, i)
			}
		}
	}
	b := []byte{'['}
	for i, p := range pos {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(p), 10)
	}
	return "'" + string(append(b, ']')) + "'"
}

// ValueExpr is the SQL that encodes column reference ref of affinity aff in the
// private format, exactly as the capture triggers encode it (the affinity only orders
// the type tests, so any affinity gives the same JSON). Decode what it yields with
// AppendRowJSON, or ExpandReals for values that go back to SQLite.
func ValueExpr(ref string, aff Affinity) string { return valueExpr(ref, aff) }

// RowJSON is the SQL expression of a row of t as a JSON object in the private format,
// as REST reads it: the rowid first for a table without a declared key, then the
// columns in table order, each encoded as the capture triggers encode it, so that a
// REST row and the image of the change that wrote it are the same JSON. sel limits
// the columns (nil: all); its names must have been checked with Ref.
func (t *Table) RowJSON(sel []string) string {
	want := func(string) bool { return true }
	if sel != nil {
		set := make(map[string]bool, len(sel))
		for _, s := range sel {
			set[s] = true
		}
		want = func(n string) bool { return set[n] }
	}
	var b strings.Builder
	b.WriteString("json_object(")
	n := 0
	if rk := t.RowidKey; rk != "" && want(rk) {
		b.WriteString(QuoteLiteral(rk))
		b.WriteString(",")
		b.WriteString(rk)
		n++
	}
	for i := range t.Columns {
		c := &t.Columns[i]
		if !want(c.Name) {
			continue
		}
		if n > 0 {
			b.WriteString(",")
		}
		b.WriteString(QuoteLiteral(c.Name))
		b.WriteString(",")
		b.WriteString(valueExpr(QuoteIdent(c.Name), t.Affinity(c)))
		n++
	}
	b.WriteString(")")
	return b.String()
}
