package capture

import (
	"strings"

	"github.com/sqlws/sqlws/models"
)

// Column collations. SQLite reports a column's declared collating sequence through
// no pragma (pragma_table_xinfo has none; only sqlite3_table_column_metadata, which
// database/sql cannot reach), yet every comparison on a column uses it, so the stream's
// filter evaluator must know it to agree with REST's SQL. It is read from the table's
// CREATE TABLE text as SQLite keeps it in sqlite_schema (ALTER TABLE edits that text
// too): each column definition's last COLLATE clause outside parentheses. The reading
// is checked against the columns SQLite reports — same number, same names, in order —
// and when anything does not fit, the collations are unknown rather than guessed
// (Table.Collation reports false, and the evaluator refuses comparisons).

// sqlToken is a token of SQL text: a bare word, a quoted name or string (dequoted), or
// one punctuation character.
type sqlToken struct {
	text   string
	quoted bool // "…", `…`, […] or '…'
	punct  bool
}

// tokenizeSQL splits SQL text into tokens, skipping spaces and comments. It reports
// false for text it cannot tokenize (an unterminated quote).
func tokenizeSQL(s string) ([]sqlToken, bool) {
	var out []sqlToken
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || (c >= '\t' && c <= '\r'):
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				return out, true
			}
			i += j + 1
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return out, true
			}
			i += 2 + j + 2
		case c == '"' || c == '`' || c == '\'':
			var b strings.Builder
			j := i + 1
			closed := false
			for j < len(s) {
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c { // doubled: one literal quote
						b.WriteByte(c)
						j += 2
						continue
					}
					closed = true
					j++
					break
				}
				b.WriteByte(s[j])
				j++
			}
			if !closed {
				return nil, false
			}
			out = append(out, sqlToken{text: b.String(), quoted: true})
			i = j
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, false
			}
			out = append(out, sqlToken{text: s[i+1 : i+j], quoted: true})
			i += j + 1
		case isIDChar(c):
			j := i
			for j < len(s) && isIDChar(s[j]) {
				j++
			}
			out = append(out, sqlToken{text: s[i:j]})
			i = j
		default:
			out = append(out, sqlToken{text: s[i : i+1], punct: true})
			i++
		}
	}
	return out, true
}

// isIDChar is SQLite's sqlite3IsIdChar: letters, digits, '_', '$' and every byte of
// a multi-byte character.
func isIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

// declaredCollations reads each column's declared collating sequence from a CREATE
// TABLE statement, upper-cased, for the columns that declare one. ok is false unless
// the column definitions it finds are exactly cols (names in order).
func declaredCollations(createSQL string, cols []models.Column) (map[string]string, bool) {
	toks, ok := tokenizeSQL(createSQL)
	if !ok {
		return nil, false
	}
	start := -1
	for i, t := range toks {
		if t.punct && t.text == "(" {
			start = i + 1
			break
		}
		if !t.quoted && strings.EqualFold(t.text, "AS") {
			return nil, false // CREATE TABLE … AS SELECT: no column definitions
		}
	}
	if start < 0 {
		return nil, false
	}
	// Split the definitions on commas outside nested parentheses.
	var defs [][]sqlToken
	depth, from := 0, start
	end := -1
	for i := start; i < len(toks) && end < 0; i++ {
		t := toks[i]
		if !t.punct {
			continue
		}
		switch t.text {
		case "(":
			depth++
		case ")":
			if depth == 0 {
				defs = append(defs, toks[from:i])
				end = i
			}
			depth--
		case ",":
			if depth == 0 {
				defs = append(defs, toks[from:i])
				from = i + 1
			}
		}
	}
	if end < 0 {
		return nil, false
	}
	colls := map[string]string{}
	n := 0
	for _, def := range defs {
		if len(def) == 0 {
			return nil, false
		}
		if !def[0].quoted && !def[0].punct {
			switch strings.ToUpper(def[0].text) {
			case "CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN":
				// Table constraints follow the columns; nothing of them is a column's.
				if n != len(cols) {
					return nil, false
				}
				return colls, true
			}
		}
		if def[0].punct || n >= len(cols) || def[0].text != cols[n].Name {
			return nil, false
		}
		depth := 0
		for i := 1; i < len(def); i++ {
			t := def[i]
			if t.punct {
				switch t.text {
				case "(":
					depth++
				case ")":
					depth--
				}
				continue
			}
			if depth == 0 && !t.quoted && strings.EqualFold(t.text, "COLLATE") {
				if i+1 >= len(def) || def[i+1].punct {
					return nil, false
				}
				colls[cols[n].Name] = strings.ToUpper(def[i+1].text)
				i++
			}
		}
		n++
	}
	if n != len(cols) {
		return nil, false
	}
	return colls, true
}
