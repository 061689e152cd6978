package query

// SQLite's LIKE (func.c patternCompare with likeInfoNorm: '%' and '_' wildcards, no
// escape, case folded for ASCII only), ported so the stream's evaluator matches
// exactly what `col LIKE ?` matches. Both strings end at their first NUL, as in
// SQLite, which compares zero-terminated text.

// like reports whether text matches pattern.
func like(pattern, text []byte) bool {
	return patternCompare(cutNUL(pattern), cutNUL(text)) == likeMatch
}

func cutNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

const (
	likeMatch = iota
	likeNoMatch
	likeNoWildcardMatch
)

// utf8Read is sqlite3Utf8Read: the next character of b from i (0 at the end) and
// the index after it. Malformed UTF-8 reads as SQLite reads it (a stray continuation
// byte is itself; an overlong or surrogate form is U+FFFD).
func utf8Read(b []byte, i int) (uint32, int) {
	if i >= len(b) {
		return 0, i
	}
	c := uint32(b[i])
	i++
	if c < 0x80 {
		return c, i
	}
	if c >= 0xc0 {
		c = uint32(utf8Trans1[c-0xc0])
		for i < len(b) && b[i]&0xc0 == 0x80 {
			c = c<<6 + uint32(b[i]&0x3f)
			i++
		}
		if c < 0x80 || c&0xFFFFF800 == 0xD800 || c&0xFFFFFFFE == 0xFFFE {
			c = 0xFFFD
		}
	}
	return c, i
}

var utf8Trans1 = [64]byte{
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
	0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	0x00, 0x01, 0x02, 0x03, 0x00, 0x01, 0x00, 0x00,
}

func asciiLower(c uint32) uint32 {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func asciiUpper(c uint32) uint32 {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// patternCompare is SQLite's, for LIKE without ESCAPE.
func patternCompare(pat, str []byte) int {
	p, s := 0, 0
	for {
		var c uint32
		c, p = utf8Read(pat, p)
		if c == 0 {
			break
		}
		if c == '%' {
			// Skip further '%'s, and for each '_' among them one character.
			for {
				c, p = utf8Read(pat, p)
				if c != '%' && c != '_' {
					break
				}
				if c == '_' {
					var c2 uint32
					c2, s = utf8Read(str, s)
					if c2 == 0 {
						return likeNoWildcardMatch
					}
				}
			}
			if c == 0 {
				return likeMatch
			}
			if c < 0x80 {
				// Find c (either case) in the rest of the string, byte by byte,
				// and try to match the pattern after it from just past it.
				lo, up := byte(asciiLower(c)), byte(asciiUpper(c))
				for {
					for s < len(str) && str[s] != lo && str[s] != up {
						s++
					}
					if s >= len(str) {
						break
					}
					s++
					if m := patternCompare(pat[p:], str[s:]); m != likeNoMatch {
						return m
					}
				}
			} else {
				for {
					var c2 uint32
					c2, s = utf8Read(str, s)
					if c2 == 0 {
						break
					}
					if c2 != c {
						continue
					}
					if m := patternCompare(pat[p:], str[s:]); m != likeNoMatch {
						return m
					}
				}
			}
			return likeNoWildcardMatch
		}
		var c2 uint32
		c2, s = utf8Read(str, s)
		if c == c2 {
			continue
		}
		if c < 0x80 && c2 < 0x80 && asciiLower(c) == asciiLower(c2) {
			continue
		}
		if c == '_' && c2 != 0 {
			continue
		}
		return likeNoMatch
	}
	if s >= len(str) {
		return likeMatch
	}
	return likeNoMatch
}
