package broker

import (
	"errors"
	"strings"
)

// Subjects. Every change of table T in the database whose stream id is ID is published
// to
//
//	sqlws.<EscapeToken(ID)>.<EscapeToken(T)>
//
// and the JetStream stream holds sqlws.<EscapeToken(ID)>.> only, so that one NATS
// account can carry several databases' streams side by side and a consumer can
// filter by table with an ordinary subject filter.
//
// A table name can be any string SQLite accepts, but a NATS subject token cannot
// hold '.', '*', '>' or whitespace, and should not be empty. EscapeToken keeps
// ASCII letters, digits, '_' and '-' and writes every other byte as '%' and two
// upper-case hex digits (percent-encoding, byte by byte, so non-ASCII names escape
// their UTF-8 bytes); the empty name is the lone token "%". The result is never
// empty and holds only [A-Za-z0-9_%-], and UnescapeToken inverts it exactly:
//
//	todos        → todos
//	order items  → order%20items
//	a.b          → a%2Eb
//	100%         → 100%25
//	ünïcode      → %C3%BCn%C3%AFcode
//	""           → %
const subjectRoot = "sqlws"

// EscapeToken returns s as a NATS subject token (see the escaping rules above).
func EscapeToken(s string) string {
	if s == "" {
		return "%"
	}
	plain := true
	for i := 0; i < len(s); i++ {
		if !tokenSafe(s[i]) {
			plain = false
			break
		}
	}
	if plain {
		return s // the common case allocates nothing
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if tokenSafe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0xf])
	}
	return b.String()
}

const upperHex = "0123456789ABCDEF"

func tokenSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// errBadToken says a subject token is not one EscapeToken writes.
var errBadToken = errors.New("not an escaped sqlws subject token")

// UnescapeToken inverts EscapeToken. It rejects anything EscapeToken cannot have
// written, so two tokens never decode to the same name.
func UnescapeToken(tok string) (string, error) {
	if tok == "%" {
		return "", nil
	}
	if tok == "" {
		return "", errBadToken
	}
	if !strings.Contains(tok, "%") {
		for i := 0; i < len(tok); i++ {
			if !tokenSafe(tok[i]) {
				return "", errBadToken
			}
		}
		return tok, nil
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case tokenSafe(c):
			out = append(out, c)
		case c == '%' && i+2 < len(tok):
			hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
			if hi < 0 || lo < 0 {
				return "", errBadToken
			}
			b := byte(hi<<4 | lo)
			if tokenSafe(b) {
				return "", errBadToken // EscapeToken never escapes a safe byte
			}
			out = append(out, b)
			i += 2
		default:
			return "", errBadToken
		}
	}
	return string(out), nil
}

// unhex is the value of an upper-case hex digit, -1 for anything else.
func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// subjectPrefix is "sqlws.<escaped stream id>.", which every subject of the stream
// starts with.
func subjectPrefix(streamID string) string {
	return subjectRoot + "." + EscapeToken(streamID) + "."
}

// tableOf returns the table of a subject under prefix.
func tableOf(prefix, subject string) (string, error) {
	tok, ok := strings.CutPrefix(subject, prefix)
	if !ok || strings.Contains(tok, ".") {
		return "", errBadToken
	}
	return UnescapeToken(tok)
}
