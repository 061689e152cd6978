package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// Parts are the members of a change record as AppendChange wrote them, each value's
// raw JSON (pk, old and new as they are, "null" included), without decoding them.
type Parts struct {
	Op           string
	Moved        string
	PK, Old, New []byte
	Seq, TS      int64
	Table        []byte // the JSON string, quotes included
}

var errRecord = errors.New("malformed change record")

// SplitChange splits a change record into its members in one pass, for readers that
// look at every change (filters): encoding/json would cost several times more. It
// accepts exactly the records AppendChange writes (any member order); anything else
// is an error.
func SplitChange(rec []byte) (Parts, error) {
	var p Parts
	i := SkipJSONSpace(rec, 0)
	if i >= len(rec) || rec[i] != '{' {
		return p, errRecord
	}
	i++
	for {
		i = SkipJSONSpace(rec, i)
		if i < len(rec) && rec[i] == '}' {
			return p, nil
		}
		if i >= len(rec) || rec[i] != '"' {
			return p, errRecord
		}
		kEnd, ok := SkipJSONString(rec, i)
		if !ok {
			return p, errRecord
		}
		key := rec[i+1 : kEnd-1]
		i = SkipJSONSpace(rec, kEnd)
		if i >= len(rec) || rec[i] != ':' {
			return p, errRecord
		}
		i = SkipJSONSpace(rec, i+1)
		vEnd, ok := SkipJSONValue(rec, i)
		if !ok {
			return p, errRecord
		}
		v := rec[i:vEnd]
		switch string(key) {
		case "seq":
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return p, errRecord
			}
			p.Seq = n
		case "ts":
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return p, errRecord
			}
			p.TS = n
		case "table":
			p.Table = v
		case "op", "moved":
			var s string
			if bytes.IndexByte(v, '\\') < 0 && len(v) >= 2 && v[0] == '"' {
				s = string(v[1 : len(v)-1])
			} else if json.Unmarshal(v, &s) != nil {
				return p, errRecord
			}
			if string(key) == "op" {
				p.Op = s
			} else {
				p.Moved = s
			}
		case "pk":
			p.PK = v
		case "old":
			p.Old = v
		case "new":
			p.New = v
		}
		i = SkipJSONSpace(rec, vEnd)
		if i < len(rec) && rec[i] == ',' {
			i++
		} else if i >= len(rec) || rec[i] != '}' {
			return p, errRecord
		}
	}
}

// JSON scanning shared by every reader of sqlws's own JSON (change records here, row
// images and keys in package capture). The input is JSON SQLite or sqlws wrote, so
// well-formed: these find ends, they do not validate.

// SkipJSONSpace returns the index of the first byte at or after i that is not JSON
// whitespace.
func SkipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// SkipJSONString returns the index after the JSON string starting at b[i] ('"').
func SkipJSONString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return i, false
}

// SkipJSONValue returns the index after the JSON value starting at b[i].
func SkipJSONValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		return SkipJSONString(b, i)
	case '{', '[':
		// Counting brackets is enough to find the end: strings (where brackets mean
		// nothing) are skipped whole. No depth limit: a TEXT column written with
		// json() can nest as deep as the application likes.
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end, ok := SkipJSONString(b, i)
				if !ok {
					return end, false
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
		}
		return i, false
	}
	start := i
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i, i > start
}
